package allocator

import (
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/gpuslice/gpuslice/pkg/podrequest"
)

// MixClass is one kind of GPU request and its share of the workload.
type MixClass struct {
	Resources []podrequest.ResourceCount
	// Host is the CPU and memory the class asks for (zero when unknown).
	Host   Host
	Weight float64
	// Demand is the class's share of the device demand (0 when unknown):
	// pods of classes that ask for many devices are few, but hold much of
	// it.
	Demand float64
}

// Host is CPU and memory: what a pod requests, or what a node has left.
type Host struct {
	MilliCPU int64
	MemBytes int64
}

// Host requests are learned in buckets, so that pods of one GPU shape with
// slightly different CPU or memory requests make one class; a class asks
// for the top of its bucket.
const (
	cpuBucket = 500     // millicores
	memBucket = 1 << 30 // bytes
)

func bucket(v, size int64) int64 {
	if v <= 0 {
		return 0
	}
	return (v + size - 1) / size * size
}

// Mix is a workload mix: request classes with weights summing to 1. It is
// immutable once built; what is derived from it (dead-space tables) is
// cached in it, safe for concurrent use.
type Mix struct {
	Classes []MixClass
	// dead caches deadTable's results (nil: computed on each call).
	dead *deadTables
}

// MixLearner learns the workload mix from the requests the scheduler sees,
// with exponentially decaying weights so the mix follows the workload. It is
// safe for concurrent use.
type MixLearner struct {
	mu         sync.Mutex
	growth     float64 // 1/decay per observation
	scale      float64
	maxClasses int
	classes    map[string]*learnedClass
	// seen remembers the last pods observed by ObserveOnce (a ring of keys
	// and a set), so that a pod retried by the scheduler counts once.
	seen     map[string]struct{}
	seenRing []string
	seenNext int
}

// seenCapacity bounds the pods ObserveOnce remembers.
const seenCapacity = 1 << 16

// ObserveOnce records a pod's request the first time it is seen: demand
// counts whether or not the pod finds a node, so pods that do not fit (the
// shapes a fragmented cluster fails) stay in the mix.
func (l *MixLearner) ObserveOnce(podKey string, req *podrequest.Request, host Host) {
	if req.Empty() {
		return
	}
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string]struct{}{}
		l.seenRing = make([]string, seenCapacity)
	}
	if _, dup := l.seen[podKey]; dup {
		l.mu.Unlock()
		return
	}
	if old := l.seenRing[l.seenNext]; old != "" {
		delete(l.seen, old)
	}
	l.seenRing[l.seenNext] = podKey
	l.seenNext = (l.seenNext + 1) % len(l.seenRing)
	l.seen[podKey] = struct{}{}
	l.mu.Unlock()
	l.ObserveHost(req, host)
}

type learnedClass struct {
	resources []podrequest.ResourceCount
	host      Host
	raw       float64
	// size is the devices one pod of the class asks for: raw*size is the
	// class's share of device demand, what the learner keeps classes by.
	size float64
}

// demand is the class's decayed device demand.
func (c *learnedClass) demand() float64 { return c.raw * c.size }

// requestSize is the devices a request asks for, all resources together.
func requestSize(rcs []podrequest.ResourceCount) float64 {
	n := 0
	for _, rc := range rcs {
		n += rc.Count
	}
	return float64(max(n, 1))
}

// NewMixLearner returns a learner whose weights halve every halfLife
// observations, keeping at most maxClasses classes (the lightest are
// forgotten first).
func NewMixLearner(halfLife, maxClasses int) *MixLearner {
	halfLife = max(halfLife, 1)
	return &MixLearner{
		growth:     math.Pow(2, 1/float64(halfLife)),
		scale:      1,
		maxClasses: max(maxClasses, 1),
		classes:    map[string]*learnedClass{},
	}
}

// Observe records one pod's GPU request.
func (l *MixLearner) Observe(req *podrequest.Request) { l.ObserveHost(req, Host{}) }

// ObserveHost records one pod's GPU request with its CPU and memory
// request. Pods that ask for no GPU are not part of the mix.
func (l *MixLearner) ObserveHost(req *podrequest.Request, host Host) {
	if req.Empty() {
		return
	}
	host = Host{MilliCPU: bucket(host.MilliCPU, cpuBucket), MemBytes: bucket(host.MemBytes, memBucket)}
	key := req.String()
	if host != (Host{}) {
		key = fmt.Sprintf("%s cpu=%dm mem=%d", key, host.MilliCPU, host.MemBytes)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Instead of decaying every class, grow the weight of new observations.
	l.scale *= l.growth
	if l.scale > 1e100 {
		for _, c := range l.classes {
			c.raw /= l.scale
		}
		l.scale = 1
	}
	if c, ok := l.classes[key]; ok {
		c.raw += l.scale
		return
	}
	if len(l.classes) >= l.maxClasses {
		lightest, lw := "", math.Inf(1)
		for k, c := range l.classes {
			if d := c.demand(); d < lw || (d == lw && k < lightest) {
				lightest, lw = k, d
			}
		}
		delete(l.classes, lightest)
	}
	l.classes[key] = &learnedClass{
		resources: append([]podrequest.ResourceCount(nil), req.Effective...), host: host, raw: l.scale,
		size: requestSize(req.Effective),
	}
}

// Snapshot returns the current mix, classes sorted by weight (heaviest
// first). A class's weight is its share of the pods; classes under minShare
// of the device demand are dropped. Demand, not pod count, decides what is
// kept (here and when the learner forgets a class): rare pods that ask for
// whole nodes are few but hold much of the demand, and they are the ones a
// fragmented cluster fails.
func (l *MixLearner) Snapshot(minShare float64) *Mix {
	l.mu.Lock()
	defer l.mu.Unlock()
	total := 0.0
	for _, c := range l.classes {
		total += c.demand()
	}
	m := &Mix{dead: &deadTables{}}
	if total == 0 {
		return m
	}
	kept := 0.0
	for _, c := range l.classes {
		if c.demand()/total < minShare {
			continue
		}
		kept += c.raw
		m.Classes = append(m.Classes, MixClass{Resources: c.resources, Host: c.host, Weight: c.raw, Demand: c.demand() / total})
	}
	for i := range m.Classes {
		m.Classes[i].Weight /= kept
	}
	sort.Slice(m.Classes, func(i, j int) bool {
		if m.Classes[i].Weight != m.Classes[j].Weight {
			return m.Classes[i].Weight > m.Classes[j].Weight
		}
		if ki, kj := classKey(m.Classes[i].Resources), classKey(m.Classes[j].Resources); ki != kj {
			return ki < kj
		}
		if m.Classes[i].Host.MilliCPU != m.Classes[j].Host.MilliCPU {
			return m.Classes[i].Host.MilliCPU < m.Classes[j].Host.MilliCPU
		}
		return m.Classes[i].Host.MemBytes < m.Classes[j].Host.MemBytes
	})
	return m
}

func classKey(rcs []podrequest.ResourceCount) string {
	r := podrequest.Request{Effective: rcs}
	return r.String()
}
