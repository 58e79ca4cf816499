package whatif

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"

	gpusliceapi "github.com/gpuslice/gpuslice/pkg/apis/gpuslice/v1alpha1"
	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Labels that NVIDIA's GPU feature discovery (GFD) and MIG manager put on
// GPU nodes, read by the inference.
const (
	LabelProduct         = "nvidia.com/gpu.product"
	LabelCount           = "nvidia.com/gpu.count"
	LabelMemory          = "nvidia.com/gpu.memory"
	LabelReplicas        = "nvidia.com/gpu.replicas"
	LabelSharingStrategy = "nvidia.com/gpu.sharing-strategy"
	LabelMIGStrategy     = "nvidia.com/mig.strategy"
	LabelMIGConfig       = "nvidia.com/mig.config"
	LabelMIGConfigState  = "nvidia.com/mig.config.state"
	// LabelInstanceType is the well-known label the prices are keyed by.
	LabelInstanceType = v1.LabelInstanceTypeStable
)

// Confidence says how a node's topology was obtained.
type Confidence string

const (
	// Exact: the GPUNode that gpuslice's exporter published from NVML.
	Exact Confidence = "exact"
	// Labels: GFD labels and the node's allocatable agree with one layout.
	Labels Confidence = "labels+allocatable"
	// Guess: labels missing or disagreeing; the layout is a plausible one
	// that advertises the node's allocatable.
	Guess Confidence = "guess"
	// Unknown: the node advertises GPUs that cannot be modelled; it takes
	// no GPU pods in the replay.
	Unknown Confidence = "unknown"
)

// Inference is the GPU topology of one node and how sure it is.
type Inference struct {
	Node string `json:"node"`
	// Topology is nil for a node without GPUs or whose GPUs could not be
	// modelled (Confidence Unknown).
	Topology   *topology.Node `json:"-"`
	Confidence Confidence     `json:"confidence,omitempty"`
	// Source says in a few words what the topology came from.
	Source string `json:"source,omitempty"`
	// Notes are problems met on the way (ignored labels, mismatches).
	Notes []string `json:"notes,omitempty"`
}

// GPUs counts the inferred GPUs.
func (in *Inference) GPUs() int {
	if in.Topology == nil {
		return 0
	}
	return len(in.Topology.GPUs)
}

// Summary is the one-line form: "labels+allocatable: layout all-1g.10gb
// resolved; <notes>".
func (in *Inference) Summary() string {
	if in.Confidence == "" {
		return "no GPUs"
	}
	s := string(in.Confidence) + ": " + in.Source
	if len(in.Notes) > 0 {
		s += " (" + strings.Join(in.Notes, "; ") + ")"
	}
	return s
}

// Inferrer infers node topologies.
type Inferrer struct {
	Catalog *topology.Catalog
	// MIGParted resolves nvidia.com/mig.config layout names; nil when no
	// mig-parted configuration is known.
	MIGParted *topology.MIGParted
}

// Infer returns the topology of a node: the GPUNode's when there is a valid
// one, otherwise one inferred from GFD labels, the allocatable and the MIG
// catalog. It never fails: what it cannot model is said in the result.
func (f *Inferrer) Infer(node *v1.Node, gn *gpusliceapi.GPUNode) Inference {
	in := Inference{Node: node.Name}
	if gn != nil {
		topo := gn.Spec.Topology()
		topo.Name = node.Name
		err := topo.Validate(f.Catalog)
		if err == nil {
			in.Topology, in.Confidence, in.Source = topo, Exact, "GPUNode"
			if gn.Spec.State != "" && gn.Spec.State != gpusliceapi.StateReady {
				in.Notes = append(in.Notes, fmt.Sprintf("GPUNode state %s", gn.Spec.State))
			}
			return in
		}
		in.Notes = append(in.Notes, fmt.Sprintf("GPUNode ignored: %v", err))
	}
	f.inferFromLabels(node, &in)
	return in
}

// advertised is what the device plugin advertises on a node.
type advertised struct {
	whole, shared int64
	// mig maps a MIG profile to its advertised devices, migShared the
	// renamed (.shared) ones.
	mig, migShared map[string]int64
}

func (a *advertised) empty() bool {
	return a.whole == 0 && a.shared == 0 && len(a.mig) == 0 && len(a.migShared) == 0
}

// maxDevices bounds what one node may advertise before the inference gives
// up (a node with 16 GPUs of 7 MIG devices time-sliced 32 ways has 3 584).
const maxDevices = 1 << 14

func (a *advertised) total() int64 {
	n := a.whole + a.shared
	for _, m := range []map[string]int64{a.mig, a.migShared} {
		for _, c := range m {
			n += c
		}
	}
	return n
}

func readAdvertised(rl v1.ResourceList) advertised {
	a := advertised{mig: map[string]int64{}, migShared: map[string]int64{}}
	for name, q := range rl {
		n := min(q.Value(), maxDevices+1) // no overflow when summed
		if n <= 0 {
			continue
		}
		s := string(name)
		switch {
		case s == topology.ResourceGPU:
			a.whole = n
		case s == topology.ResourceGPU+topology.SharedSuffix:
			a.shared = n
		case strings.HasPrefix(s, topology.MIGResourcePrefix):
			p := strings.TrimPrefix(s, topology.MIGResourcePrefix)
			if base, ok := strings.CutSuffix(p, topology.SharedSuffix); ok {
				a.migShared[base] = n
			} else {
				a.mig[p] = n
			}
		}
	}
	return a
}

// labelInt reads a positive integer label; a malformed one is noted and
// ignored.
func labelInt(labels map[string]string, key string, notes *[]string) (int, bool) {
	v, ok := labels[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > 1<<16 {
		*notes = append(*notes, fmt.Sprintf("label %s=%q is not a positive count: ignored", key, v))
		return 0, false
	}
	return n, true
}

// lookupProduct finds the catalog model of a GFD product label, which
// writes the NVML name with '-' for spaces ("NVIDIA-A100-SXM4-40GB") and may
// carry "-SHARED" (time-slicing) or "-MIG-<profile>" (MIG strategy single).
// It returns the NVML name (the label's, spaces restored, when the catalog
// does not know it), the model (nil when unknown) and the single-strategy
// profile.
func lookupProduct(cat *topology.Catalog, label string) (product string, model *topology.Model, migProfile string) {
	raw := strings.TrimSpace(label)
	raw = strings.TrimSuffix(raw, "-SHARED")
	if i := strings.Index(raw, "-MIG-"); i >= 0 {
		raw, migProfile = raw[:i], raw[i+len("-MIG-"):]
	}
	if m, ok := cat.Lookup(raw); ok {
		return raw, m, migProfile
	}
	dashed := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(raw, "NVIDIA-"), "nvidia-"))
	for _, m := range cat.Models() {
		for _, name := range m.NVMLNames {
			n := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "NVIDIA "), " ", "-"))
			if n == dashed {
				return name, m, migProfile
			}
		}
	}
	return strings.ReplaceAll(raw, "-", " "), nil, migProfile
}

func (f *Inferrer) inferFromLabels(node *v1.Node, in *Inference) {
	labels := node.Labels
	adv := readAdvertised(node.Status.Allocatable)
	count, hasCount := labelInt(labels, LabelCount, &in.Notes)
	if adv.empty() {
		if hasCount {
			in.Confidence, in.Source = Unknown, fmt.Sprintf("label %s=%d but the node advertises no nvidia.com resource (device plugin not running?): no GPU pods can go here", LabelCount, count)
		} else if len(in.Notes) > 0 {
			in.Confidence, in.Source = Unknown, "no nvidia.com resource advertised"
		}
		return
	}
	if n := adv.total(); n > maxDevices {
		in.Confidence, in.Source = Unknown, fmt.Sprintf("%d GPU devices advertised: implausible, not modelled", n)
		return
	}
	productLabel, hasProduct := labels[LabelProduct]
	product, model, singleProfile := lookupProduct(f.Catalog, productLabel)
	if !hasProduct || productLabel == "" {
		product = "unknown GPU"
		in.Notes = append(in.Notes, "no "+LabelProduct+" label")
	}
	replicas, hasReplicas := labelInt(labels, LabelReplicas, &in.Notes)
	if !hasReplicas {
		replicas = 1
	}
	switch s := labels[LabelSharingStrategy]; s {
	case "", "none", "time-slicing":
	case "mps":
		in.Notes = append(in.Notes, "MPS sharing modelled as time-slicing replicas")
	default:
		in.Notes = append(in.Notes, fmt.Sprintf("label %s=%q unknown: ignored", LabelSharingStrategy, s))
	}
	strategy := topology.MIGStrategy(labels[LabelMIGStrategy])
	switch strategy {
	case "", topology.MIGStrategyNone, topology.MIGStrategySingle, topology.MIGStrategyMixed:
	default:
		in.Notes = append(in.Notes, fmt.Sprintf("label %s=%q unknown: ignored", LabelMIGStrategy, strategy))
		strategy = ""
	}
	b := builder{node: node.Name, product: product, model: model, replicas: replicas, memMiB: gpuMemory(model, labels)}
	var err error
	switch {
	case len(adv.mig) > 0 || len(adv.migShared) > 0:
		if strategy != "" && strategy != topology.MIGStrategyMixed {
			in.Notes = append(in.Notes, fmt.Sprintf("label %s=%s but MIG resources are advertised: modelled as mixed", LabelMIGStrategy, strategy))
		}
		err = f.mixed(&b, adv, count, hasCount, labels, in)
	case strategy == topology.MIGStrategySingle || singleProfile != "":
		err = f.single(&b, adv, singleProfile, labels, in)
	default:
		err = f.whole(&b, adv, count, hasCount, in)
	}
	if err != nil {
		in.Topology, in.Confidence, in.Source = nil, Unknown, err.Error()
		return
	}
	topo := b.build()
	if err := topo.Validate(f.Catalog); err != nil {
		in.Topology, in.Confidence, in.Source = nil, Unknown, fmt.Sprintf("inferred layout is not valid: %v", err)
		return
	}
	// What the inferred node advertises must be what the node advertises.
	caps, _ := topo.Capacity()
	if diff := capacityDiff(caps, node.Status.Allocatable); diff != "" {
		in.Confidence = Guess
		in.Notes = append(in.Notes, "advertises "+diff)
	}
	in.Topology = topo
}

// gpuMemory is the GPU memory of the model, else the GFD memory label.
func gpuMemory(model *topology.Model, labels map[string]string) int64 {
	if model != nil && len(model.Profiles) > 0 {
		return model.Profiles[len(model.Profiles)-1].MemoryMiB
	}
	if v, err := strconv.ParseInt(labels[LabelMemory], 10, 64); err == nil && v > 0 {
		return v
	}
	return 0
}

// whole models GPUs without MIG, time-sliced when the replicas label or the
// allocatable says so.
func (f *Inferrer) whole(b *builder, adv advertised, count int, hasCount bool, in *Inference) error {
	devices := adv.whole + adv.shared
	b.rename = adv.shared > 0
	b.strategy = topology.MIGStrategyNone
	if adv.whole > 0 && adv.shared > 0 {
		in.Notes = append(in.Notes, "both nvidia.com/gpu and nvidia.com/gpu.shared advertised: modelled as shared")
	}
	r := int64(b.replicas)
	conf, src := Labels, ""
	switch {
	case r > 1 && devices%r == 0:
		b.gpus = int(devices / r)
		src = fmt.Sprintf("%d GPUs time-sliced x%d", b.gpus, r)
	case r > 1:
		b.replicas, b.gpus, conf = 1, int(devices), Guess
		in.Notes = append(in.Notes, fmt.Sprintf("%d devices do not split into %d replicas per GPU: modelled as whole GPUs", devices, r))
		src = fmt.Sprintf("%d whole GPUs", b.gpus)
	case hasCount && devices > int64(count) && devices%int64(count) == 0:
		b.replicas, b.gpus, conf = int(devices/int64(count)), count, Guess
		src = fmt.Sprintf("%d GPUs time-sliced x%d (replicas from allocatable / %s)", count, b.replicas, LabelCount)
	default:
		b.gpus = int(devices)
		src = fmt.Sprintf("%d whole GPUs", b.gpus)
		if !hasCount {
			conf = Guess
			src += " from allocatable alone"
		}
	}
	if b.rename || b.replicas > 1 {
		b.shareWhole = true
	}
	if hasCount && b.gpus != count {
		in.Notes = append(in.Notes, fmt.Sprintf("%s=%d but %d GPUs advertised (unhealthy or not advertised): modelled %d", LabelCount, count, b.gpus, b.gpus))
	}
	in.Confidence, in.Source = conf, src
	return nil
}

// single models MIG strategy single: every GPU holds one profile, all its
// devices advertised as nvidia.com/gpu.
func (f *Inferrer) single(b *builder, adv advertised, profile string, labels map[string]string, in *Inference) error {
	if b.model == nil {
		return fmt.Errorf("MIG strategy single on a product the MIG catalog does not know (%s): GPUs not modelled", b.product)
	}
	b.strategy = topology.MIGStrategySingle
	devices := adv.whole + adv.shared
	b.rename = adv.shared > 0
	var perGPU []string
	conf, src := Labels, ""
	if cfg := labels[LabelMIGConfig]; cfg != "" && f.MIGParted != nil {
		if l, err := f.MIGParted.Layout(f.Catalog, cfg, b.product); err != nil {
			in.Notes = append(in.Notes, fmt.Sprintf("layout %s: %v", cfg, err))
		} else if len(slices.Compact(slices.Clone(l))) != 1 {
			in.Notes = append(in.Notes, fmt.Sprintf("layout %s mixes profiles, which strategy single cannot advertise", cfg))
		} else {
			perGPU, src = l, fmt.Sprintf("layout %s resolved", cfg)
		}
	}
	if perGPU == nil {
		if profile == "" {
			return fmt.Errorf("MIG strategy single without a layout (%s) or a product label naming the profile: GPUs not modelled", LabelMIGConfig)
		}
		p, ok := b.model.Profile(profile)
		if !ok {
			return fmt.Errorf("MIG profile %q (from %s) does not exist on %s", profile, LabelProduct, b.model.Name)
		}
		for n := p.MaxInstances; n > 0; n-- {
			l := slices.Repeat([]string{profile}, n)
			if _, err := b.model.Pack(l); err == nil {
				perGPU = l
				break
			}
		}
		conf, src = Guess, fmt.Sprintf("%d x %s per GPU assumed (the most that fit)", len(perGPU), profile)
	}
	if len(perGPU) == 0 {
		return fmt.Errorf("no MIG layout of %s fits: GPUs not modelled", b.model.Name)
	}
	r := int64(b.replicas)
	per := int64(len(perGPU)) * r
	b.gpus = int((devices + per - 1) / per)
	if devices%per != 0 {
		conf = Guess
		in.Notes = append(in.Notes, fmt.Sprintf("%d devices are not a whole number of GPUs of %d: modelled %d GPUs", devices, per, b.gpus))
	}
	b.migPerGPU = repeatLayout(perGPU, b.gpus)
	in.Confidence, in.Source = conf, fmt.Sprintf("%s, %d GPUs", src, b.gpus)
	return nil
}

// mixed models MIG strategy mixed: MIG GPUs with per-profile resources,
// plus any GPUs without MIG as whole nvidia.com/gpu.
func (f *Inferrer) mixed(b *builder, adv advertised, count int, hasCount bool, labels map[string]string, in *Inference) error {
	if b.model == nil {
		return fmt.Errorf("MIG devices advertised on a product the MIG catalog does not know (%s): GPUs not modelled", b.product)
	}
	b.strategy = topology.MIGStrategyMixed
	r := int64(b.replicas)
	// MIG devices per profile, before time-slicing.
	devs := map[string]int64{}
	for p, n := range adv.mig {
		devs[p] += n
	}
	for p, n := range adv.migShared {
		devs[p] += n
		b.rename = true
	}
	if r > 1 {
		for p, n := range devs {
			if n%r != 0 {
				in.Notes = append(in.Notes, fmt.Sprintf("%d %s devices do not split into %d replicas: replicas ignored", n, p, r))
				r, b.replicas = 1, 1
				break
			}
		}
		for p := range devs {
			devs[p] /= r
		}
	}
	for _, p := range slices.Sorted(maps.Keys(devs)) {
		if _, ok := b.model.Profile(p); !ok {
			return fmt.Errorf("MIG profile %s advertised but %s has no such profile", p, b.model.Name)
		}
	}
	wholeGPUs := int(adv.whole / r)
	if adv.shared > 0 {
		wholeGPUs = int(adv.shared / r)
	}
	b.wholeGPUs = wholeGPUs
	// The named layout, when it explains the allocatable exactly.
	if cfg := labels[LabelMIGConfig]; cfg != "" && f.MIGParted == nil {
		in.Notes = append(in.Notes, "no mig-parted configuration to resolve layout "+cfg)
	} else if cfg != "" {
		if st := labels[LabelMIGConfigState]; st != "" && st != "success" {
			in.Notes = append(in.Notes, fmt.Sprintf("%s=%s: the layout may not be applied yet", LabelMIGConfigState, st))
		}
		l, err := f.MIGParted.Layout(f.Catalog, cfg, b.product)
		switch {
		case err != nil:
			in.Notes = append(in.Notes, fmt.Sprintf("layout %s: %v", cfg, err))
		default:
			if k, ok := multipleOf(devs, l); ok {
				b.migPerGPU = repeatLayout(l, k)
				in.Confidence, in.Source = Labels, fmt.Sprintf("layout %s resolved, %d MIG GPUs", cfg, k)
				if wholeGPUs > 0 {
					in.Source += fmt.Sprintf(" + %d without MIG", wholeGPUs)
				}
				if hasCount && k+wholeGPUs != count {
					in.Confidence = Guess
					in.Notes = append(in.Notes, fmt.Sprintf("%s=%d but %d GPUs advertise devices", LabelCount, count, k+wholeGPUs))
				}
				return nil
			}
			in.Notes = append(in.Notes, fmt.Sprintf("allocatable %s is not a whole number of GPUs in layout %s", formatCounts(devs), cfg))
		}
	}
	// No usable layout: split the devices evenly over the MIG GPUs the
	// count label implies, else pack them first-fit.
	if hasCount && count > wholeGPUs {
		k := count - wholeGPUs
		if l, ok := evenSplit(devs, k); ok {
			if _, err := b.model.Pack(l); err == nil {
				b.migPerGPU = repeatLayout(l, k)
				in.Confidence, in.Source = Guess, fmt.Sprintf("allocatable split evenly over %d MIG GPUs", k)
				return nil
			}
		}
	}
	layouts, err := firstFit(b.model, devs)
	if err != nil {
		return err
	}
	b.migPerGPU = layouts
	in.Confidence, in.Source = Guess, fmt.Sprintf("allocatable packed first-fit onto %d MIG GPUs", len(layouts))
	if hasCount && len(layouts)+wholeGPUs != count {
		in.Notes = append(in.Notes, fmt.Sprintf("%s=%d, modelled %d", LabelCount, count, len(layouts)+wholeGPUs))
	}
	return nil
}

// multipleOf returns k when devs is exactly k copies of the layout.
func multipleOf(devs map[string]int64, layout []string) (int, bool) {
	per := map[string]int64{}
	for _, p := range layout {
		per[p]++
	}
	if len(per) != len(devs) {
		return 0, false
	}
	k := int64(-1)
	for p, n := range per {
		d, ok := devs[p]
		if !ok || d%n != 0 {
			return 0, false
		}
		if k == -1 {
			k = d / n
		} else if d/n != k {
			return 0, false
		}
	}
	return int(k), k > 0
}

// evenSplit returns the per-GPU layout when every profile's devices divide
// evenly over k GPUs.
func evenSplit(devs map[string]int64, k int) ([]string, bool) {
	var l []string
	for _, p := range slices.Sorted(maps.Keys(devs)) {
		if devs[p]%int64(k) != 0 {
			return nil, false
		}
		l = append(l, slices.Repeat([]string{p}, int(devs[p])/k)...)
	}
	return l, len(l) > 0
}

// firstFit packs the MIG devices, largest first, onto as few GPUs as it
// can, each GPU's instances a valid placement.
func firstFit(model *topology.Model, devs map[string]int64) ([][]string, error) {
	var all []string
	for _, p := range slices.Sorted(maps.Keys(devs)) {
		all = append(all, slices.Repeat([]string{p}, int(devs[p]))...)
	}
	size := func(p string) int {
		prof, _ := model.Profile(p)
		return prof.MemorySlices
	}
	sort.SliceStable(all, func(i, j int) bool { return size(all[i]) > size(all[j]) })
	var gpus [][]string
next:
	for _, p := range all {
		for i := range gpus {
			try := append(slices.Clone(gpus[i]), p)
			if _, err := model.Pack(try); err == nil {
				gpus[i] = try
				continue next
			}
		}
		if _, err := model.Pack([]string{p}); err != nil {
			return nil, fmt.Errorf("MIG profile %s does not fit on an empty %s: %v", p, model.Name, err)
		}
		gpus = append(gpus, []string{p})
	}
	return gpus, nil
}

func repeatLayout(l []string, k int) [][]string {
	out := make([][]string, k)
	for i := range out {
		out[i] = l
	}
	return out
}

func formatCounts(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d x %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

// capacityDiff compares what a topology advertises with a node's
// allocatable, for the nvidia.com resources.
func capacityDiff(caps map[string]int64, alloc v1.ResourceList) string {
	seen := map[string]bool{}
	var diffs []string
	for name, q := range alloc {
		s := string(name)
		if !strings.HasPrefix(s, "nvidia.com/") || (s != topology.ResourceGPU && s != topology.ResourceGPU+topology.SharedSuffix && !strings.HasPrefix(s, topology.MIGResourcePrefix)) {
			continue
		}
		seen[s] = true
		if caps[s] != q.Value() {
			diffs = append(diffs, fmt.Sprintf("%s %d, modelled %d", s, q.Value(), caps[s]))
		}
	}
	for s, n := range caps {
		if !seen[s] && n > 0 {
			diffs = append(diffs, fmt.Sprintf("%s 0, modelled %d", s, n))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, ", ")
}

// builder assembles an inferred topology.
type builder struct {
	node, product string
	model         *topology.Model
	memMiB        int64
	strategy      topology.MIGStrategy
	replicas      int
	rename        bool
	// shareWhole time-slices nvidia.com/gpu.
	shareWhole bool
	// gpus is the number of GPUs without MIG when migPerGPU is nil
	// (strategy none); wholeGPUs those beside MIG GPUs (strategy mixed).
	gpus, wholeGPUs int
	migPerGPU       [][]string
}

func (b *builder) build() *topology.Node {
	n := &topology.Node{Name: b.node, MIGStrategy: b.strategy, DeviceIDStrategy: topology.DeviceIDUUID}
	idx := 0
	addGPU := func(profiles []string) {
		g := topology.GPU{
			UUID: fmt.Sprintf("GPU-%s-%d", b.node, idx), Index: idx, Product: b.product,
			MemoryMiB: b.memMiB, Healthy: true, MIGEnabled: profiles != nil,
		}
		if profiles != nil {
			insts, _ := b.model.Pack(profiles) // checked by the caller
			for j, in := range insts {
				in.DeviceID = fmt.Sprintf("MIG-%s-%d-%d", b.node, idx, j)
				g.Instances = append(g.Instances, in)
			}
		}
		n.GPUs = append(n.GPUs, g)
		idx++
	}
	for _, l := range b.migPerGPU {
		addGPU(l)
	}
	whole := b.wholeGPUs
	if b.migPerGPU == nil {
		whole = b.gpus
	}
	for range whole {
		addGPU(nil)
	}
	shared := b.replicas > 1 || b.rename
	if shared {
		ts := &topology.TimeSlicing{RenameByDefault: b.rename}
		names := map[string]bool{}
		if whole > 0 || b.shareWhole {
			names[topology.ResourceGPU] = true
		}
		for _, l := range b.migPerGPU {
			for _, p := range l {
				if b.strategy == topology.MIGStrategySingle {
					names[topology.ResourceGPU] = true
				} else {
					names[topology.MIGResourceName(p)] = true
				}
			}
		}
		for _, name := range slices.Sorted(maps.Keys(names)) {
			ts.Resources = append(ts.Resources, topology.SharedResource{Name: name, Replicas: max(b.replicas, 1)})
		}
		n.TimeSlicing = ts
	}
	return n
}
