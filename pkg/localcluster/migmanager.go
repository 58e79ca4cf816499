package localcluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// MIG manager's labels on the node, besides topology.MIGConfigLabel and
// topology.MIGConfigStateLabel.
const (
	// DevicePluginDeployLabel is the GPU operator's label that schedules the
	// device plugin; MIG manager sets it to "paused-for-mig-change" while it
	// works.
	DevicePluginDeployLabel = "nvidia.com/gpu.deploy.device-plugin"
	pausedForMIGChange      = "paused-for-mig-change"
)

// MIGManagerOptions configure a FakeMIGManager.
type MIGManagerOptions struct {
	// ConfigMapNamespace/ConfigMapName/ConfigKey locate the mig-parted config
	// the GPU operator mounts into MIG manager (migManager.config.name).
	// Defaults: gpu-operator, custom-mig-parted-config, config.yaml.
	ConfigMapNamespace, ConfigMapName, ConfigKey string
	// Propagation is how long a ConfigMap update takes to reach the mounted
	// file (kubelet's sync; up to about a minute on a real node).
	Propagation time.Duration
	// RunTime is how long a run takes with the device plugin down before
	// the GPUs are rebuilt (pod-deletion waits, sleeps).
	RunTime time.Duration
	// PluginDelay is how long after state success the device plugin takes
	// to register again (allocatable stays 0 until then).
	PluginDelay time.Duration
}

func (o *MIGManagerOptions) defaults() {
	if o.ConfigMapNamespace == "" {
		o.ConfigMapNamespace = "gpu-operator"
	}
	if o.ConfigMapName == "" {
		o.ConfigMapName = "custom-mig-parted-config"
	}
	if o.ConfigKey == "" {
		o.ConfigKey = "config.yaml"
	}
}

// MIGRun is one run of the fake MIG manager.
type MIGRun struct {
	Config string
	// State is the final nvidia.com/mig.config.state: success or failed.
	State string
	// Changed are the indexes of the GPUs whose counts differed (rebuilt,
	// or, on failure, being rebuilt).
	Changed []int
	Error   string
	// Started and Ended bound the run; PluginUp is when allocatable came
	// back (zero when the plugin was never taken down).
	Started, Ended, PluginUp time.Time
}

// FakeMIGManager stands in for NVIDIA's MIG manager on one simulated node,
// written from what MIG manager does (shared/notes/mig-manager.md) and
// apart from gpuslice's planner: it watches the node's
// nvidia.com/mig.config label, ignores a value it has already handled,
// re-reads the mig-parted config (as mounted: ConfigMap updates arrive after
// Propagation) on each change, sets nvidia.com/mig.config.state=pending,
// takes the device plugin's resources on the node to 0, rebuilds only the
// GPUs whose counts differ (each from scratch, through NVML: every GPU
// instance destroyed, then the new ones created largest first without a
// placement, other orders tried when that fails), fails the run when a GPU
// to destroy holds a device a pod uses (instances destroyed before stay
// gone), sets success (or failed), and only then lets the device plugin
// register again.
type FakeMIGManager struct {
	n    *SimNode
	opts MIGManagerOptions
	cat  *topology.Catalog

	mu      sync.Mutex
	mounted []mountedConfig
	runs    []MIGRun
	handled string
	running bool
	// startedAt is when the manager (its pod) started.
	startedAt time.Time
	wake      chan struct{}
}

type mountedConfig struct {
	data string
	at   time.Time
}

// StartMIGManager starts the node's fake MIG manager; it stops with ctx.
func (n *SimNode) StartMIGManager(ctx context.Context, o MIGManagerOptions) *FakeMIGManager {
	o.defaults()
	m := &FakeMIGManager{n: n, opts: o, cat: topology.NewCatalog(), wake: make(chan struct{}, 1), startedAt: time.Now()}
	nodes := informers.NewSharedInformerFactoryWithOptions(n.kube, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", n.Spec.Name).String()
	}))
	nodeInf := nodes.Core().V1().Nodes().Informer()
	_, _ = nodeInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { m.poke() },
		UpdateFunc: func(_, _ any) { m.poke() },
	})
	cms := informers.NewSharedInformerFactoryWithOptions(n.kube, 0, informers.WithNamespace(o.ConfigMapNamespace), informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", o.ConfigMapName).String()
	}))
	cmInf := cms.Core().V1().ConfigMaps().Informer()
	_, _ = cmInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.observeConfig(obj) },
		UpdateFunc: func(_, obj any) { m.observeConfig(obj) },
	})
	nodes.Start(ctx.Done())
	cms.Start(ctx.Done())
	go func() {
		defer nodes.Shutdown()
		defer cms.Shutdown()
		for {
			select {
			case <-ctx.Done():
				return
			case <-m.wake:
			}
			node, exists, err := nodeInf.GetStore().GetByKey(n.Spec.Name)
			if err != nil || !exists {
				continue
			}
			kn, ok := node.(*corev1.Node)
			if !ok {
				continue
			}
			want := kn.Labels[topology.MIGConfigLabel]
			m.mu.Lock()
			same := want == m.handled
			if !same {
				m.handled = want
			}
			m.mu.Unlock()
			// An informer fires on changes only: the same value again, or
			// an update of another field, starts nothing.
			if same || want == "" {
				continue
			}
			m.run(ctx, want)
		}
	}()
	return m
}

func (m *FakeMIGManager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *FakeMIGManager) observeConfig(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	m.mu.Lock()
	at := time.Now()
	if len(m.mounted) == 0 && m.startedAt.Sub(cm.CreationTimestamp.Time) > 0 && at.Sub(m.startedAt) < time.Second {
		// A ConfigMap that existed when MIG manager's pod started is in
		// the volume from the start.
		at = time.Time{}
	}
	m.mounted = append(m.mounted, mountedConfig{data: cm.Data[m.opts.ConfigKey], at: at})
	m.mu.Unlock()
}

// configFile is the mig-parted file as mounted now: the newest ConfigMap
// content older than Propagation.
func (m *FakeMIGManager) configFile() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cut := time.Now().Add(-m.opts.Propagation)
	for i := len(m.mounted) - 1; i >= 0; i-- {
		if !m.mounted[i].at.After(cut) {
			return m.mounted[i].data, true
		}
	}
	return "", false
}

// Runs returns the runs so far.
func (m *FakeMIGManager) Runs() []MIGRun {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]MIGRun(nil), m.runs...)
}

// Running reports whether a run is under way.
func (m *FakeMIGManager) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

func (m *FakeMIGManager) run(ctx context.Context, config string) {
	m.mu.Lock()
	m.running = true
	m.mu.Unlock()
	r := MIGRun{Config: config, Started: time.Now()}
	defer func() {
		r.Ended = time.Now()
		m.mu.Lock()
		m.runs = append(m.runs, r)
		m.running = false
		m.mu.Unlock()
		m.poke() // a label change folded during the run is applied next
	}()
	fail := func(err error) {
		r.State, r.Error = "failed", err.Error()
		_ = m.n.setNodeLabels(ctx, map[string]string{topology.MIGConfigStateLabel: "failed"})
	}
	if err := m.n.setNodeLabels(ctx, map[string]string{topology.MIGConfigStateLabel: "pending"}); err != nil {
		r.State, r.Error = "failed", err.Error()
		return
	}
	want, err := m.desired(config)
	if err != nil {
		fail(err)
		return
	}
	changed, err := m.changedGPUs(want)
	if err != nil {
		fail(err)
		return
	}
	r.Changed = changed
	if len(changed) == 0 {
		// Already applied: straight to success, nothing restarted.
		r.State = "success"
		_ = m.n.setNodeLabels(ctx, map[string]string{topology.MIGConfigStateLabel: "success"})
		return
	}
	// The device plugin (and every GPU client) is paused for the whole
	// node: the kubelet marks its devices unhealthy, allocatable drops to 0.
	_ = m.n.setNodeLabels(ctx, map[string]string{DevicePluginDeployLabel: pausedForMIGChange})
	if err := m.n.pluginDown(ctx); err != nil {
		fail(err)
		return
	}
	defer func() {
		// Labels restored and state set, then the plugin registers again.
		_ = m.n.setNodeLabels(ctx, map[string]string{DevicePluginDeployLabel: "true"})
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.opts.PluginDelay):
		}
		if err := m.n.pluginUp(ctx); err == nil {
			r.PluginUp = time.Now()
		}
	}()
	select {
	case <-ctx.Done():
		fail(ctx.Err())
		return
	case <-time.After(m.opts.RunTime):
	}
	for _, idx := range changed {
		if err := m.rebuild(ctx, idx, want[idx]); err != nil {
			fail(err)
			return
		}
	}
	r.State = "success"
	_ = m.n.setNodeLabels(ctx, map[string]string{topology.MIGConfigStateLabel: "success"})
}

// desired resolves the named config for every GPU of the node: index ->
// counts, for the GPUs an entry selects (by device-filter and devices).
func (m *FakeMIGManager) desired(config string) (map[int]map[string]int, error) {
	data, ok := m.configFile()
	if !ok {
		return nil, fmt.Errorf("mig-parted config file %s/%s not mounted yet", m.opts.ConfigMapName, m.opts.ConfigKey)
	}
	f, err := topology.ParseMIGParted([]byte(data))
	if err != nil {
		return nil, err
	}
	entries, ok := f.Configs[config]
	if !ok {
		return nil, fmt.Errorf("unknown MIG config %q", config)
	}
	lib := m.n.NVML.Interface()
	count, ret := lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("nvml device count: %v", ret)
	}
	out := map[int]map[string]int{}
	for idx := 0; idx < count; idx++ {
		dev, ret := lib.DeviceGetHandleByIndex(idx)
		if ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("gpu %d: %v", idx, ret)
		}
		name, _ := dev.GetName()
		pci, _ := m.cat.PCIDeviceID(name)
		current, _, ret := dev.GetMigMode()
		if ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("gpu %d: MIG mode: %v", idx, ret)
		}
		var match *topology.MIGPartedEntry
		for i := range entries {
			e := &entries[i]
			if e.DeviceFilter != nil && !containsFold(e.DeviceFilter, pci) {
				continue
			}
			if !e.AllDevices && !containsInt(e.Devices, idx) {
				continue
			}
			if match != nil {
				return nil, fmt.Errorf("gpu %d: more than one entry of %s applies", idx, config)
			}
			match = e
		}
		if match == nil {
			continue
		}
		enabled := current == gonvml.DEVICE_MIG_ENABLE
		if match.MIGEnabled != enabled {
			return nil, fmt.Errorf("gpu %d: config %s changes the MIG mode (needs a GPU reset; this fake does not do it)", idx, config)
		}
		if !enabled {
			continue
		}
		c := map[string]int{}
		for p, k := range match.MIGDevices {
			if k > 0 {
				c[p] = k
			}
		}
		out[idx] = c
	}
	return out, nil
}

// gpuInstances reads one GPU's instances through NVML: profile name, GPU
// instance handle and the UUID of its MIG device.
type nvmlInstance struct {
	profile string
	gi      gonvml.GpuInstance
	uuid    string
}

func (m *FakeMIGManager) instances(idx int) (gonvml.Device, *topology.Model, []nvmlInstance, error) {
	dev, ret := m.n.NVML.Interface().DeviceGetHandleByIndex(idx)
	if ret != gonvml.SUCCESS {
		return nil, nil, nil, fmt.Errorf("gpu %d: %v", idx, ret)
	}
	name, _ := dev.GetName()
	model, ok := m.cat.Lookup(name)
	if !ok {
		return nil, nil, nil, fmt.Errorf("gpu %d: %q has no MIG profiles", idx, name)
	}
	uuidByGI := map[int]string{}
	if max, ret := dev.GetMaxMigDeviceCount(); ret == gonvml.SUCCESS {
		for j := 0; j < max; j++ {
			mig, ret := dev.GetMigDeviceHandleByIndex(j)
			if ret != gonvml.SUCCESS {
				continue
			}
			gid, r1 := mig.GetGpuInstanceId()
			uuid, r2 := mig.GetUUID()
			if r1 == gonvml.SUCCESS && r2 == gonvml.SUCCESS {
				uuidByGI[gid] = uuid
			}
		}
	}
	var out []nvmlInstance
	for pi := 0; pi < gonvml.GPU_INSTANCE_PROFILE_COUNT; pi++ {
		info, ret := dev.GetGpuInstanceProfileInfo(pi)
		if ret != gonvml.SUCCESS {
			continue
		}
		gis, ret := dev.GetGpuInstances(&info)
		if ret != gonvml.SUCCESS {
			continue
		}
		prof := profileByID(model, info.Id)
		for _, gi := range gis {
			gii, ret := gi.GetInfo()
			if ret != gonvml.SUCCESS {
				return nil, nil, nil, fmt.Errorf("gpu %d: instance info: %v", idx, ret)
			}
			out = append(out, nvmlInstance{profile: prof, gi: gi, uuid: uuidByGI[int(gii.Id)]})
		}
	}
	return dev, model, out, nil
}

func profileByID(m *topology.Model, id uint32) string {
	for i := range m.Profiles {
		if uint32(m.Profiles[i].ID) == id {
			return m.Profiles[i].Name
		}
	}
	return fmt.Sprintf("profile-%d", id)
}

// changedGPUs lists the GPUs whose counts differ from want.
func (m *FakeMIGManager) changedGPUs(want map[int]map[string]int) ([]int, error) {
	var out []int
	for idx, w := range want {
		_, _, ins, err := m.instances(idx)
		if err != nil {
			return nil, err
		}
		have := map[string]int{}
		for _, in := range ins {
			have[in.profile]++
		}
		if !topology.SameCounts(have, w) {
			out = append(out, idx)
		}
	}
	sort.Ints(out)
	return out, nil
}

// rebuild destroys every instance of GPU idx and creates want, as
// mig-parted does.
func (m *FakeMIGManager) rebuild(ctx context.Context, idx int, want map[string]int) error {
	dev, model, ins, err := m.instances(idx)
	if err != nil {
		return err
	}
	inUse, err := m.n.devicesInUse(ctx)
	if err != nil {
		return err
	}
	for _, in := range ins {
		if pod, used := inUse[in.uuid]; used {
			return fmt.Errorf("gpu %d: destroying %s (%s): in use by %s", idx, in.profile, in.uuid, pod)
		}
		if ret := in.gi.Destroy(); ret != gonvml.SUCCESS {
			return fmt.Errorf("gpu %d: destroying %s: %v", idx, in.profile, ret)
		}
	}
	infos := map[string]gonvml.GpuInstanceProfileInfo{}
	var items []string
	for pi := 0; pi < gonvml.GPU_INSTANCE_PROFILE_COUNT; pi++ {
		info, ret := dev.GetGpuInstanceProfileInfo(pi)
		if ret != gonvml.SUCCESS {
			continue
		}
		infos[profileByID(model, info.Id)] = info
	}
	for p, k := range want {
		if _, ok := infos[p]; !ok {
			return fmt.Errorf("gpu %d: profile %s not supported", idx, p)
		}
		for range k {
			items = append(items, p)
		}
	}
	// Largest first: compute slices, then memory.
	sort.SliceStable(items, func(i, j int) bool {
		a, b := infos[items[i]], infos[items[j]]
		if a.SliceCount != b.SliceCount {
			return a.SliceCount > b.SliceCount
		}
		if a.MemorySizeMB != b.MemorySizeMB {
			return a.MemorySizeMB > b.MemorySizeMB
		}
		return items[i] < items[j]
	})
	var lastErr error
	tries := 0
	ok := permutations(items, func(order []string) bool {
		tries++
		if tries > 5040 {
			return true
		}
		var made []gonvml.GpuInstance
		for _, p := range order {
			info := infos[p]
			gi, ret := dev.CreateGpuInstance(&info)
			if ret != gonvml.SUCCESS {
				lastErr = fmt.Errorf("gpu %d: creating %s (order %s): %v", idx, p, strings.Join(order, ","), ret)
				for _, g := range made {
					_ = g.Destroy()
				}
				return false
			}
			made = append(made, gi)
		}
		lastErr = nil
		return true
	})
	if !ok || lastErr != nil {
		if lastErr == nil {
			lastErr = fmt.Errorf("gpu %d: no creation order builds %s", idx, topology.FormatCounts(want))
		}
		return lastErr
	}
	return nil
}

// permutations calls f with each distinct order of items, starting with
// items itself, until f returns true; it reports whether one did.
func permutations(items []string, f func([]string) bool) bool {
	cur := append([]string(nil), items...)
	used := make([]bool, len(items))
	order := make([]string, 0, len(items))
	var rec func() bool
	rec = func() bool {
		if len(order) == len(cur) {
			return f(order)
		}
		seen := map[string]bool{}
		for i, p := range cur {
			if used[i] || seen[p] {
				continue
			}
			seen[p] = true
			used[i] = true
			order = append(order, p)
			if rec() {
				return true
			}
			order = order[:len(order)-1]
			used[i] = false
		}
		return false
	}
	return rec()
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) && s != "" {
			return true
		}
	}
	return false
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// devicesInUse maps each device ID a pod holds on the node (replica
// suffixes stripped) to the pod.
func (n *SimNode) devicesInUse(ctx context.Context) (map[string]string, error) {
	pods, err := n.Kubelet.List(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range pods {
		for _, c := range p.Containers {
			for _, d := range c.Devices {
				for _, id := range d.DeviceIDs {
					base, _, _ := strings.Cut(id, topology.ReplicaSeparator)
					out[base] = p.Namespace + "/" + p.Name
				}
			}
		}
	}
	return out, nil
}

// pluginDown is the device plugin going away: the kubelet marks every
// device unhealthy and allocatable of every nvidia.com/ resource drops to
// 0 (capacity stays).
func (n *SimNode) pluginDown(ctx context.Context) error {
	topo, err := n.Topology()
	if err != nil {
		return err
	}
	down := *topo
	down.GPUs = append([]topology.GPU(nil), topo.GPUs...)
	for i := range down.GPUs {
		down.GPUs[i].Healthy = false
	}
	n.Kubelet.SetTopology(&down)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.Spec.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for name := range node.Status.Allocatable {
			if strings.HasPrefix(string(name), "nvidia.com/") {
				node.Status.Allocatable[name] = *resource.NewQuantity(0, resource.DecimalSI)
			}
		}
		_, err = n.kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

// pluginUp is the device plugin registering again with the layout NVML
// has now.
func (n *SimNode) pluginUp(ctx context.Context) error {
	topo, err := n.Topology()
	if err != nil {
		return err
	}
	n.Kubelet.SetTopology(topo)
	res, err := capacity(topo)
	if err != nil {
		return err
	}
	return n.setDeviceResources(ctx, res)
}

// setDeviceResources sets the node's nvidia.com/ capacity and allocatable
// to res, dropping resources res does not list.
func (n *SimNode) setDeviceResources(ctx context.Context, res corev1.ResourceList) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.Spec.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for name := range node.Status.Capacity {
			if _, gpu := res[name]; !gpu && strings.HasPrefix(string(name), "nvidia.com/") {
				delete(node.Status.Capacity, name)
				delete(node.Status.Allocatable, name)
			}
		}
		for name, q := range res {
			node.Status.Capacity[name] = q
			node.Status.Allocatable[name] = q
		}
		_, err = n.kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

// setNodeLabels sets labels on the node.
func (n *SimNode) setNodeLabels(ctx context.Context, labels map[string]string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.Spec.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		for k, v := range labels {
			node.Labels[k] = v
		}
		_, err = n.kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}
