package gpuslice

import (
	"context"
	"os"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	tf "k8s.io/kubernetes/pkg/scheduler/testing/framework"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/apis/config"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/topology"
	"github.com/gpuslice/gpuslice/pkg/topology/fixtures"
)

var now = time.Unix(1_800_000_000, 0)

func testArgs(strategy string) *config.GPUSliceArgs {
	return &config.GPUSliceArgs{
		ScoringStrategy:         config.ScoringStrategy{Type: strategy, GPUWeight: 2, NodeWeight: 1, MixHalfLife: 100},
		HeartbeatTimeout:        metav1.Duration{Duration: 40 * time.Second},
		DefaultAllocationPolicy: "distributed",
		LeaseNamespace:          "gpuslice-system",
		DefaultSharing:          config.SharingDistinctGPUs,
	}
}

// testShared returns shared state around a given cache, without informers
// (the unit tests feed the cache directly).
func testShared(c *cache.Cache, args *config.GPUSliceArgs) *Shared {
	return &Shared{catalog: topology.NewCatalog(), cache: c, mix: allocator.NewMixLearner(100, 16), args: args}
}

// newCache returns a cache holding fresh topologies for the specs.
func newCache(t testing.TB, specs ...fixtures.Spec) *cache.Cache {
	t.Helper()
	c := cache.New(cache.Options{StaleAfter: 40 * time.Second, Now: func() time.Time { return now }})
	cat := topology.NewCatalog()
	for _, s := range specs {
		c.SetTopology(s.Name, &cache.Topology{Node: fixtures.MustBuild(cat, s), State: "Ready"})
		c.SetHeartbeat(s.Name, now)
	}
	return c
}

// pluginFactory returns a framework factory of shared's plugin with args,
// and where it leaves the plugin it builds.
func pluginFactory(shared *Shared, args *config.GPUSliceArgs) (frameworkruntime.PluginFactory, **Plugin) {
	built := new(*Plugin)
	return func(ctx context.Context, _ runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		p, err := shared.New(ctx, args, h)
		if err == nil {
			*built = p.(*Plugin)
		}
		return p, err
	}, built
}

// newPlugin builds the plugin inside a real framework instance.
func newPlugin(t testing.TB, shared *Shared, args *config.GPUSliceArgs, client kubernetes.Interface) *Plugin {
	t.Helper()
	if client == nil {
		client = fake.NewSimpleClientset()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory, built := pluginFactory(shared, args)
	_, err := tf.NewFramework(ctx, []tf.RegisterPluginFunc{
		tf.RegisterQueueSortPlugin(queuesort.Name, queuesort.New),
		tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New),
		tf.RegisterPluginAsExtensions(Name, factory, "PreFilter", "Filter", "PreScore", "Score", "Reserve", "PreBind"),
	}, "gpuslice-test",
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(informers.NewSharedInformerFactory(client, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return *built
}

func gpuPod(name string, resources map[string]int64) *v1.Pod {
	limits := v1.ResourceList{}
	for r, n := range resources {
		limits[v1.ResourceName(r)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "main", Resources: v1.ResourceRequirements{Limits: limits}}}},
	}
}

func nodeInfo(name string) fwk.NodeInfo {
	ni := framework.NewNodeInfo()
	ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return ni
}

// cycle runs PreFilter and returns the cycle state.
func cycle(t testing.TB, pl *Plugin, pod *v1.Pod) *framework.CycleState {
	t.Helper()
	cs := framework.NewCycleState()
	if _, st := pl.PreFilter(context.Background(), cs, pod, nil); !st.IsSuccess() {
		t.Fatalf("PreFilter: %v", st)
	}
	return cs
}

func TestMain(m *testing.M) {
	// The framework records per-plugin metrics; register them once.
	schedmetrics.Register()
	os.Exit(m.Run())
}
