package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	resourceslicetracker "k8s.io/dynamic-resource-allocation/resourceslice/tracker"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkplugins "k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/dynamicresources"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/nodevolumelimits"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	"k8s.io/kubernetes/pkg/scheduler/util/assumecache"

	"github.com/gpuslice/gpuslice/pkg/allocator"
	"github.com/gpuslice/gpuslice/pkg/cache"
	"github.com/gpuslice/gpuslice/pkg/plugins/gpuslice"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Node is one simulated node.
type Node struct {
	Node *v1.Node
	// Topology is the node's GPU topology as its exporter would publish it;
	// nil for a node without GPUs.
	Topology *topology.Node
}

// Options configure a Scheduler.
type Options struct {
	// Profile is the scheduler profile to run (see LoadConfig, Profile).
	Profile *schedconfig.KubeSchedulerProfile
	Nodes   []Node
	// Rand breaks ties between equally scored nodes.
	Rand *rand.Rand
	// DefaultPolicy is the device plugin policy of nodes whose topology
	// does not name one (GPUSliceArgs.defaultAllocationPolicy).
	DefaultPolicy topology.AllocationPolicy
}

// Scheduler is one profile of kube-scheduler over a simulated cluster.
type Scheduler struct {
	fw       framework.Framework
	nodes    []fwk.NodeInfo
	index    map[string]int
	shared   *gpuslice.Shared
	gpuCache *cache.Cache
	// devices is each node's device plugin: what the kubelet really hands out.
	devices []*allocator.State
	cat     *topology.Catalog
	percent *int32
	next    int
	rng     *rand.Rand
	logger  klog.Logger
	stats   Stats
	// bound are the admitted pods, for Remove and reconfigurations.
	bound map[types.UID]*boundPod
	topos map[string]*topology.Node
	// lister is what the framework's plugins read the snapshot through;
	// AddNode and RemoveNode swap the snapshot behind it.
	lister *liveLister
	// start is the simulated time of every exporter heartbeat.
	start  time.Time
	policy topology.AllocationPolicy
}

// liveLister is the framework's snapshot lister, whose snapshot changes
// when nodes come and go (plugins look the lister up on every call).
type liveLister struct{ fwk.SharedLister }

// Stats count what happened over a Scheduler's life.
type Stats struct {
	Scheduled, Unschedulable, AdmissionRejected int
	// Mispredicted counts GPUSlice reservations that differ from the devices
	// the device plugin then gave (the cache would correct them from the
	// exporter's read-back; a correct prediction keeps this at 0).
	Mispredicted int
	// Filtered is the number of node Filter evaluations.
	Filtered int
}

// New builds the framework for the profile over the nodes.
func New(ctx context.Context, opts Options) (*Scheduler, error) {
	if opts.Profile == nil {
		return nil, fmt.Errorf("no scheduler profile")
	}
	if opts.Rand == nil {
		return nil, fmt.Errorf("no random source")
	}
	schedmetrics.Register()
	logger := klog.FromContext(ctx)
	cat := topology.NewCatalog()
	start := time.Unix(1_800_000_000, 0)
	gpuCache := cache.New(cache.Options{Catalog: cat, DefaultPolicy: opts.DefaultPolicy, StaleAfter: time.Hour, Now: func() time.Time { return start }})
	shared := gpuslice.NewSharedOffline(gpuCache, cat)

	s := &Scheduler{
		index: make(map[string]int, len(opts.Nodes)), shared: shared, gpuCache: gpuCache, cat: cat,
		devices: make([]*allocator.State, len(opts.Nodes)), percent: opts.Profile.PercentageOfNodesToScore,
		rng: opts.Rand, logger: logger, bound: map[types.UID]*boundPod{}, topos: map[string]*topology.Node{},
		start: start, policy: opts.DefaultPolicy,
	}
	var v1nodes []*v1.Node
	for i, n := range opts.Nodes {
		if n.Node == nil {
			return nil, fmt.Errorf("node %d: no Node object", i)
		}
		name := n.Node.Name
		if _, dup := s.index[name]; dup {
			return nil, fmt.Errorf("node %s listed twice", name)
		}
		s.index[name] = i
		v1nodes = append(v1nodes, n.Node)
		if n.Topology == nil {
			continue
		}
		if n.Topology.Name != name {
			return nil, fmt.Errorf("node %s: topology names node %q", name, n.Topology.Name)
		}
		compiled, err := allocator.Compile(n.Topology, cat, opts.DefaultPolicy)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
		s.devices[i] = allocator.NewState(compiled)
		s.topos[name] = n.Topology
		gpuCache.SetTopology(name, &cache.Topology{Node: n.Topology, State: "Ready"})
		gpuCache.SetHeartbeat(name, start)
	}
	s.lister = &liveLister{}
	if err := s.resnapshot(v1nodes); err != nil {
		return nil, err
	}

	registry := frameworkplugins.NewInTreeRegistry()
	if err := registry.Merge(frameworkruntime.Registry{gpuslice.Name: shared.New}); err != nil {
		return nil, err
	}
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	// The managers kube-scheduler gives every profile (see
	// k8s.io/kubernetes/pkg/scheduler.New), over empty informers.
	claims := assumecache.NewAssumeCache(logger, factory.Resource().V1().ResourceClaims().Informer(), "ResourceClaim", "", nil)
	slices, err := resourceslicetracker.StartTracker(ctx, resourceslicetracker.Options{
		SliceInformer: factory.Resource().V1().ResourceSlices(),
		KubeClient:    client,
	})
	if err != nil {
		return nil, fmt.Errorf("resource slice tracker: %w", err)
	}
	fw, err := frameworkruntime.NewFramework(ctx, registry, opts.Profile,
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithSnapshotSharedLister(s.lister),
		frameworkruntime.WithSharedDRAManager(dynamicresources.NewDRAManager(ctx, claims, slices, factory)),
		frameworkruntime.WithSharedCSIManager(nodevolumelimits.NewCSIManager(factory.Storage().V1().CSINodes().Lister())),
		frameworkruntime.WithLogger(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", opts.Profile.SchedulerName, err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	s.fw = fw
	return s, nil
}

// Stats returns the counts so far.
func (s *Scheduler) Stats() Stats { return s.stats }

// Decision is the outcome of a scheduling cycle.
type Decision struct {
	// Node is the chosen node; empty when the pod is unschedulable.
	Node string
	// Reason says why the pod is unschedulable.
	Reason string
	state  fwk.CycleState
}

// Schedule runs one scheduling cycle for pod, up to and including Reserve.
// Follow a decision with a Node by Admit.
func (s *Scheduler) Schedule(ctx context.Context, pod *v1.Pod) (Decision, error) {
	state := framework.NewCycleState()
	pre, st, _ := s.fw.RunPreFilterPlugins(ctx, state, pod)
	if !st.IsSuccess() {
		if st.IsRejected() {
			s.stats.Unschedulable++
			return Decision{Reason: st.Message()}, nil
		}
		return Decision{}, fmt.Errorf("pod %s: PreFilter: %w", pod.Name, st.AsError())
	}
	candidates := s.nodes
	if pre != nil && !pre.AllNodes() {
		candidates = nil
		for name := range pre.NodeNames {
			if i, ok := s.index[name]; ok {
				candidates = append(candidates, s.nodes[i])
			}
		}
		sort.Slice(candidates, func(a, b int) bool { return candidates[a].Node().Name < candidates[b].Node().Name })
	}
	feasible, reasons, err := s.filter(ctx, state, pod, candidates, pre == nil || pre.AllNodes())
	if err != nil {
		return Decision{}, err
	}
	if len(feasible) == 0 {
		s.stats.Unschedulable++
		return Decision{Reason: summarize(reasons, len(candidates))}, nil
	}
	host := feasible[0].Node().Name
	if len(feasible) > 1 {
		if host, err = s.score(ctx, state, pod, feasible); err != nil {
			return Decision{}, err
		}
	}
	if st := s.fw.RunReservePluginsReserve(ctx, state, pod, host); !st.IsSuccess() {
		s.fw.RunReservePluginsUnreserve(ctx, state, pod, host)
		if st.IsRejected() {
			s.stats.Unschedulable++
			return Decision{Reason: "Reserve: " + st.Message()}, nil
		}
		return Decision{}, fmt.Errorf("pod %s: Reserve on %s: %w", pod.Name, host, st.AsError())
	}
	return Decision{Node: host, state: state}, nil
}

// filter runs the Filter plugins from the rotating start index, as
// kube-scheduler does, until it has found as many feasible nodes as
// percentageOfNodesToScore asks for.
func (s *Scheduler) filter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo, rotate bool) ([]fwk.NodeInfo, map[string]int, error) {
	want := numFeasibleNodesToFind(s.percent, len(nodes))
	start := 0
	if rotate {
		start = s.next
	}
	var feasible []fwk.NodeInfo
	reasons := map[string]int{}
	processed := 0
	for i := 0; i < len(nodes) && len(feasible) < want; i++ {
		ni := nodes[(start+i)%len(nodes)]
		processed++
		s.stats.Filtered++
		st := s.fw.RunFilterPlugins(ctx, state, pod, ni)
		switch {
		case st.IsSuccess():
			feasible = append(feasible, ni)
		case st.IsRejected():
			for _, r := range st.Reasons() {
				reasons[r]++
			}
		default:
			return nil, nil, fmt.Errorf("pod %s: Filter on %s: %w", pod.Name, ni.Node().Name, st.AsError())
		}
	}
	if rotate && len(nodes) > 0 {
		s.next = (start + processed) % len(nodes)
	}
	return feasible, reasons, nil
}

// numFeasibleNodesToFind is kube-scheduler's rule: every node below 100
// nodes; otherwise percentageOfNodesToScore of them (adaptive when unset:
// 50% minus 1% per 125 nodes, at least 5%), at least 100.
func numFeasibleNodesToFind(percent *int32, all int) int {
	const minNodes, minPercent = 100, 5
	if all < minNodes {
		return all
	}
	p := 0
	if percent != nil {
		p = int(*percent)
	}
	if p == 0 {
		p = max(50-all/125, minPercent)
	}
	return max(all*p/100, minNodes)
}

// score runs PreScore and Score and selects the host with the highest
// total, ties broken at random (kube-scheduler's selectHost).
func (s *Scheduler) score(ctx context.Context, state fwk.CycleState, pod *v1.Pod, feasible []fwk.NodeInfo) (string, error) {
	if st := s.fw.RunPreScorePlugins(ctx, state, pod, feasible); !st.IsSuccess() {
		return "", fmt.Errorf("pod %s: PreScore: %w", pod.Name, st.AsError())
	}
	scores, st := s.fw.RunScorePlugins(ctx, state, pod, feasible)
	if !st.IsSuccess() {
		return "", fmt.Errorf("pod %s: Score: %w", pod.Name, st.AsError())
	}
	best, ties := 0, 1
	for i := 1; i < len(scores); i++ {
		switch {
		case scores[i].TotalScore > scores[best].TotalScore:
			best, ties = i, 1
		case scores[i].TotalScore == scores[best].TotalScore:
			ties++
			if s.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return scores[best].Name, nil
}

func summarize(reasons map[string]int, nodes int) string {
	keys := make([]string, 0, len(reasons))
	for r := range reasons {
		keys = append(keys, r)
	}
	sort.Slice(keys, func(a, b int) bool {
		if reasons[keys[a]] != reasons[keys[b]] {
			return reasons[keys[a]] > reasons[keys[b]]
		}
		return keys[a] < keys[b]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", reasons[k], k)
	}
	return fmt.Sprintf("0/%d nodes are available: %s", nodes, strings.Join(parts, ", "))
}
