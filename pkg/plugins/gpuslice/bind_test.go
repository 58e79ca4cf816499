package gpuslice

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	tf "k8s.io/kubernetes/pkg/scheduler/testing/framework"

	"github.com/gpuslice/gpuslice/pkg/assignment"
)

// bindFramework builds a profile with GPUSlice and DefaultBinder at the bind
// extension point, GPUSlice first when gpusliceFirst, and records the
// Bindings the client receives.
func bindFramework(t *testing.T, gpusliceFirst bool, pods ...runtime.Object) (framework.Framework, *Plugin, *[]*v1.Binding, *fake.Clientset) {
	t.Helper()
	args := testArgs("binpack")
	shared := testShared(newCache(t, a100), args)
	client := fake.NewSimpleClientset(pods...)
	var bindings []*v1.Binding
	client.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "binding" {
			return false, nil, nil
		}
		bindings = append(bindings, a.(clienttesting.CreateAction).GetObject().(*v1.Binding))
		return true, nil, nil
	})
	factory, built := pluginFactory(shared, args)
	gpuslice := tf.RegisterPluginAsExtensions(Name, factory, "PreFilter", "Filter", "PreScore", "Score", "Reserve", "PreBind", "Bind")
	binder := tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New)
	registrations := []tf.RegisterPluginFunc{tf.RegisterQueueSortPlugin(queuesort.Name, queuesort.New), binder, gpuslice}
	if gpusliceFirst {
		registrations = []tf.RegisterPluginFunc{tf.RegisterQueueSortPlugin(queuesort.Name, queuesort.New), gpuslice, binder}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fw, err := tf.NewFramework(ctx, registrations, "gpuslice-test",
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(informers.NewSharedInformerFactory(client, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return fw, *built, &bindings, client
}

// reserve runs PreFilter, Filter and Reserve for pod on node a100.
func reserve(t *testing.T, pl *Plugin, pod *v1.Pod) fwk.CycleState {
	t.Helper()
	cs := cycle(t, pl, pod)
	if st := pl.Filter(context.Background(), cs, pod, nodeInfo("a100")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Reserve(context.Background(), cs, pod, "a100"); !st.IsSuccess() {
		t.Fatal(st)
	}
	return cs
}

func TestBindFirstBindsWithTheAssignmentInOneWrite(t *testing.T) {
	pod := gpuPod("p", map[string]int64{"nvidia.com/mig-3g.20gb": 1})
	fw, pl, bindings, client := bindFramework(t, true, pod)
	ctx := context.Background()
	cs := reserve(t, pl, pod)

	// No PreBind step: the scheduler neither patches nominatedNodeName nor
	// runs PreBind.
	if st := fw.RunPreBindPreFlights(ctx, cs, pod, "a100"); !st.IsSkip() {
		t.Fatalf("RunPreBindPreFlights = %v, want Skip", st)
	}
	if st := pl.PreBind(ctx, cs, pod, "a100"); !st.IsSuccess() {
		t.Fatalf("PreBind (called without its preflight) = %v", st)
	}
	if st := fw.RunBindPlugins(ctx, cs, pod, "a100"); !st.IsSuccess() {
		t.Fatalf("RunBindPlugins = %v", st)
	}
	if len(*bindings) != 1 {
		t.Fatalf("%d Bindings sent, want 1", len(*bindings))
	}
	b := (*bindings)[0]
	if b.Name != "p" || b.Namespace != "default" || b.UID != pod.UID || b.Target.Kind != "Node" || b.Target.Name != "a100" {
		t.Errorf("Binding %+v", b)
	}
	a, err := assignment.Decode(b.Annotations[assignment.Annotation])
	if err != nil || a.Node != "a100" || len(a.Containers) != 1 || len(a.Containers[0].Devices) != 1 {
		t.Fatalf("Binding's assignment %+v: %v", a, err)
	}
	info, _ := pl.shared.cache.Pod(pod.UID)
	if got, want := a.Containers[0].Devices[0].DeviceIDs, info.Devices[0].DeviceIDs; len(got) != 1 || got[0] != want[0] {
		t.Errorf("Binding's devices %v, reservation %v", got, want)
	}
	if len(b.Annotations) != 1 {
		t.Errorf("Binding annotations %v: gpuslice writes exactly one", b.Annotations)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			t.Errorf("unexpected %s %s/%s: the Binding is the only write", a.GetVerb(), a.GetResource().Resource, a.GetSubresource())
		}
	}
}

func TestBindFirstLeavesPodsWithoutReservationToDefaultBinder(t *testing.T) {
	pod := gpuPod("cpu-only", nil)
	fw, pl, bindings, _ := bindFramework(t, true, pod)
	ctx := context.Background()
	cs := framework.NewCycleState()
	if _, st := pl.PreFilter(ctx, cs, pod, nil); !st.IsSkip() {
		t.Fatalf("PreFilter of a pod without GPUs = %v, want Skip", st)
	}
	if st := pl.Bind(ctx, cs, pod, "a100"); !st.IsSkip() {
		t.Fatalf("Bind without a reservation = %v, want Skip", st)
	}
	if st := fw.RunBindPlugins(ctx, cs, pod, "a100"); !st.IsSuccess() {
		t.Fatalf("RunBindPlugins = %v", st)
	}
	if len(*bindings) != 1 || len((*bindings)[0].Annotations) != 0 {
		t.Fatalf("Bindings %+v, want DefaultBinder's one, without annotations", *bindings)
	}
}

func TestDefaultBinderFirstKeepsPreBind(t *testing.T) {
	pod := gpuPod("p", map[string]int64{"nvidia.com/mig-3g.20gb": 1})
	fw, pl, bindings, client := bindFramework(t, false, pod)
	ctx := context.Background()
	cs := reserve(t, pl, pod)
	if st := fw.RunPreBindPreFlights(ctx, cs, pod, "a100"); !st.IsSuccess() {
		t.Fatalf("RunPreBindPreFlights = %v, want Success (PreBind records the devices)", st)
	}
	if st := fw.RunPreBindPlugins(ctx, cs, pod, "a100"); !st.IsSuccess() {
		t.Fatalf("RunPreBindPlugins = %v", st)
	}
	if st := fw.RunBindPlugins(ctx, cs, pod, "a100"); !st.IsSuccess() {
		t.Fatalf("RunBindPlugins = %v", st)
	}
	patches := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" && a.GetSubresource() == "" {
			patches++
		}
	}
	if patches != 1 {
		t.Errorf("%d annotation patches, want PreBind's one", patches)
	}
	if len(*bindings) != 1 || len((*bindings)[0].Annotations) != 0 {
		t.Fatalf("Bindings %+v, want DefaultBinder's one, without annotations", *bindings)
	}
}
