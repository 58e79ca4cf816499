package mig

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// DynClass is a pod class of the dynamic benchmark: a Class with a mean
// run time (exponentially distributed).
type DynClass struct {
	Class
	MeanRun time.Duration
}

// Phase is one period of the dynamic benchmark's demand: class weights
// (per 100 pods) that hold for the phase's length.
type Phase struct {
	Name    string
	Weights map[string]int
}

// DynamicClasses are the dynamic benchmark's pod classes: DefaultMix's GPU
// classes (inference, small and medium LLMs, notebooks, pipelines) plus
// whole-GPU 7g training jobs, each with a mean run time.
//
//	class          MIG devices                 mean run
//	a100-1g        1g.5gb                      40 min
//	a100-2g        2g.10gb                     60 min
//	a100-3g        3g.20gb                     90 min
//	a100-pipeline  1g.5gb + 2g.10gb            60 min
//	a100-7g        7g.40gb                     120 min
//	h100-*         the H100 80GB equivalents   same
func DynamicClasses() []DynClass {
	run := map[string]time.Duration{"1g": 40 * time.Minute, "2g": time.Hour, "3g": 90 * time.Minute, "pipeline": time.Hour, "7g": 2 * time.Hour}
	var out []DynClass
	for _, c := range DefaultMix() {
		if !c.GPU() {
			continue
		}
		kind := c.Name[len("a100-"):]
		out = append(out, DynClass{Class: c, MeanRun: run[kind]})
	}
	out = append(out,
		DynClass{Class: Class{Name: "a100-7g", Description: "training / large LLM", Containers: []Container{one("trainer", 16000, 128, "7g.40gb")}}, MeanRun: run["7g"]},
		DynClass{Class: Class{Name: "h100-7g", Description: "training / large LLM", Containers: []Container{one("trainer", 16000, 256, "7g.80gb")}}, MeanRun: run["7g"]},
	)
	return out
}

// DynamicPhases is the demand's shift: inference (small slices) → training
// (3g and 7g) → mixed → inference again. Weights are per product pair: the
// same weight for the A100 and the H100 class of a kind.
func DynamicPhases() []Phase {
	both := func(w map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range w {
			out["a100-"+k] = v
			out["h100-"+k] = v
		}
		return out
	}
	inference := both(map[string]int{"1g": 30, "2g": 8, "3g": 4, "pipeline": 4, "7g": 0})
	return []Phase{
		{Name: "inference", Weights: inference},
		{Name: "training", Weights: both(map[string]int{"1g": 4, "2g": 2, "3g": 20, "pipeline": 0, "7g": 10})},
		{Name: "mixed", Weights: both(map[string]int{"1g": 16, "2g": 5, "3g": 10, "pipeline": 2, "7g": 3})},
		{Name: "inference again", Weights: inference},
	}
}

// classSize is a pod's GPU-equivalents: compute slices of its MIG devices
// over the model's 7.
func classSize(cat *topology.Catalog, c *Class) float64 {
	size := 0.0
	for res, n := range c.Devices() {
		p, _ := topology.ProfileFromResource(res)
		for _, m := range []string{"A100-40GB", "H100-80GB"} {
			model, _ := cat.ModelByName(m)
			if prof, ok := model.Profile(p); ok {
				size += float64(n) * float64(prof.ComputeSlices) / float64(model.ComputeSlices)
				break
			}
		}
	}
	return size
}

// arrival is one pod of the dynamic workload.
type arrival struct {
	at, run time.Duration
	class   *DynClass
	phase   int
	pod     Pod
}

// dynWorkload draws Poisson arrivals per phase whose offered load (pods'
// GPU-equivalents × run time per hour, over the cluster's GPUs) is load,
// with exponential run times, from seed.
func dynWorkload(cat *topology.Catalog, classes []DynClass, phases []Phase, load float64, gpus int, phaseLen time.Duration, seed int64) ([]arrival, error) {
	byName := map[string]*DynClass{}
	for i := range classes {
		byName[classes[i].Name] = &classes[i]
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x64796e))
	var out []arrival
	n := 0
	for pi, ph := range phases {
		names := make([]string, 0, len(ph.Weights))
		total := 0
		for name, w := range ph.Weights {
			if w < 0 {
				return nil, fmt.Errorf("phase %s: negative weight for %s", ph.Name, name)
			}
			if w == 0 {
				continue
			}
			if byName[name] == nil {
				return nil, fmt.Errorf("phase %s: unknown class %s", ph.Name, name)
			}
			names = append(names, name)
			total += w
		}
		if total == 0 {
			return nil, fmt.Errorf("phase %s: no class", ph.Name)
		}
		sort.Strings(names)
		// Mean GPU-equivalent hours per pod.
		work := 0.0
		for _, name := range names {
			c := byName[name]
			work += float64(ph.Weights[name]) / float64(total) * classSize(cat, &c.Class) * c.MeanRun.Hours()
		}
		rate := load * float64(gpus) / work // pods per hour
		start := time.Duration(pi) * phaseLen
		t := start
		for {
			t += time.Duration(rng.ExpFloat64() / rate * float64(time.Hour))
			if t >= start+phaseLen {
				break
			}
			x := rng.IntN(total)
			var c *DynClass
			for _, name := range names {
				if x -= ph.Weights[name]; x < 0 {
					c = byName[name]
					break
				}
			}
			run := time.Duration(math.Max(rng.ExpFloat64(), 0.02) * float64(c.MeanRun))
			name := fmt.Sprintf("%s-%d", c.Name, n)
			n++
			out = append(out, arrival{at: t, run: run, class: c, phase: pi, pod: Pod{Pod: kubePod(&c.Class, name), Class: &c.Class}})
		}
	}
	return out, nil
}
