package topology_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// layoutProblem is one class of problem the reference checker finds, with
// the text ValidateLayout's message uses for it.
type layoutProblem string

const (
	probUnknown  layoutProblem = "unknown MIG profile"
	probSize     layoutProblem = "placement size"
	probStart    layoutProblem = "not allowed"
	probOutside  layoutProblem = "outside the GPU"
	probOverlap  layoutProblem = "overlaps instance"
	probCount    layoutProblem = "instances of"
	probMedia    layoutProblem = "more than one +me instance"
	probCompute  layoutProblem = "compute slices,"
	maxFuzzInsts               = 16
)

// refProblems is an independent brute-force layout checker: it works from
// the catalog's raw profile table (not Model.Profile / AllowsStart), with a
// 64-bit occupancy bitmap, overflow-safe range checks, and counts per
// profile recomputed from scratch. It returns the set of problem classes
// found; an empty set means the layout is valid.
func refProblems(m *topology.Model, instances []topology.GPUInstance) map[layoutProblem]bool {
	probs := map[layoutProblem]bool{}
	var occupied uint64
	compute := 0
	for i, in := range instances {
		pi := -1
		for j := range m.Profiles {
			if m.Profiles[j].Name == in.Profile {
				pi = j
				break
			}
		}
		if pi < 0 {
			probs[probUnknown] = true
			continue
		}
		p := m.Profiles[pi]
		if in.Size != 0 && in.Size != p.MemorySlices {
			probs[probSize] = true
		}
		allowed := false
		for _, s := range p.Placements {
			allowed = allowed || s == in.Start
		}
		if !allowed {
			probs[probStart] = true
		}
		if in.Start < 0 || in.Start > m.MemorySlices-p.MemorySlices {
			probs[probOutside] = true
		} else {
			mask := (uint64(1)<<p.MemorySlices - 1) << in.Start
			if occupied&mask != 0 {
				probs[probOverlap] = true
			}
			occupied |= mask
		}
		compute += p.ComputeSlices
		n, media := 0, 0
		for _, other := range instances[:i+1] {
			if other.Profile == p.Name {
				n++
			}
		}
		if n > p.MaxInstances {
			probs[probCount] = true
		}
		for _, other := range instances[:i+1] {
			for _, q := range m.Profiles {
				if q.Name == other.Profile && q.MediaExtensions {
					media++
				}
			}
		}
		if media > 1 {
			probs[probMedia] = true
		}
	}
	if compute > m.ComputeSlices {
		probs[probCompute] = true
	}
	return probs
}

// decodeLayout turns fuzz bytes into a model and instances: byte 0 picks the
// model, then each 3-byte group is (profile, start, size). Bytes with the
// high bit clear pick well-formed values (a listed placement, the profile's
// size) so that valid layouts are common; set, they pick arbitrary ones,
// including out-of-range, negative and extreme offsets.
func decodeLayout(models []*topology.Model, data []byte) (*topology.Model, []topology.GPUInstance) {
	if len(data) == 0 {
		return models[0], nil
	}
	m := models[int(data[0])%len(models)]
	data = data[1:]
	var out []topology.GPUInstance
	for len(data) >= 3 && len(out) < maxFuzzInsts {
		pb, sb, zb := data[0], data[1], data[2]
		data = data[3:]

		var p *topology.Profile
		name := ""
		switch k := int(pb) % (len(m.Profiles) + 2); {
		case k < len(m.Profiles):
			p = &m.Profiles[k]
			name = p.Name
		case k == len(m.Profiles):
			name = "bogus"
		default:
			// A profile of some model, maybe this one's name, maybe not.
			om := models[int(pb)%len(models)]
			name = om.Profiles[int(pb/7)%len(om.Profiles)].Name
			p, _ = m.Profile(name)
		}

		var start int
		switch {
		case sb&0x80 == 0 && p != nil:
			start = p.Placements[int(sb)%len(p.Placements)]
		case sb == 0xff:
			start = math.MaxInt - int(zb&7)
		case sb == 0xfe:
			start = math.MinInt + int(zb&7)
		default:
			start = int(sb&0x7f)%13 - 3 // -3..9
		}

		size := 1
		if p != nil {
			size = p.MemorySlices
		}
		switch {
		case zb&0x80 == 0:
		case zb&0x40 != 0:
			size = 0 // unspecified
		default:
			size = int(zb&0x3f)%11 - 1 // -1..9
		}
		out = append(out, topology.GPUInstance{Profile: name, Start: start, Size: size, DeviceID: fmt.Sprintf("MIG-%d", len(out))})
	}
	return m, out
}

// checkAgainstReference runs ValidateLayout and the reference checker and
// reports any disagreement: valid vs invalid, and each problem class the
// reference finds must be named in the error and vice versa.
func checkAgainstReference(t *testing.T, m *topology.Model, instances []topology.GPUInstance) {
	t.Helper()
	orig := slices.Clone(instances)
	err := m.ValidateLayout(instances)
	if !slices.Equal(orig, instances) {
		t.Fatalf("ValidateLayout modified its input")
	}
	want := refProblems(m, instances)
	if (err == nil) != (len(want) == 0) {
		t.Fatalf("%s %v: ValidateLayout err = %v; reference problems %v", m.Name, instances, err, want)
	}
	if err == nil {
		return
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "invalid MIG layout on "+m.Name+": ") {
		t.Fatalf("%s: error %q lacks the model prefix", m.Name, msg)
	}
	// The unknown-profile message lists the known names; drop those lists
	// (and unknown names, which the fuzzer controls) before matching words.
	for _, prob := range []layoutProblem{probUnknown, probSize, probStart, probOutside, probOverlap, probCount, probMedia, probCompute} {
		got := strings.Contains(msg, string(prob))
		if got != want[prob] {
			t.Fatalf("%s %v: error %q; reference says %q present = %v (all: %v)", m.Name, instances, msg, prob, want[prob], want)
		}
	}
}

type fuzzSeed struct {
	desc  string
	data  []byte
	valid bool
}

// fuzzSeeds are FuzzValidateLayout's seed inputs with their expected
// verdicts, which TestFuzzSeeds checks so the encodings stay meaningful.
func fuzzSeeds(tb testing.TB, models []*topology.Model) []fuzzSeed {
	idx := func(name string) byte {
		for i, m := range models {
			if m.Name == name {
				return byte(i)
			}
		}
		tb.Fatalf("no model %s", name)
		return 0
	}
	a100, a100x80, a30 := idx("A100-40GB"), idx("A100-80GB"), idx("A30-24GB")
	// Profile bytes index Profiles in catalog order: on 8-slice models
	// 0=1g 1=1g+me 2=1g.2x 3=2g 4=3g 5=4g 6=7g, 7=unknown, 8=foreign; on the
	// A30 0=1g 1=1g+me 2=2g 3=2g+me 4=4g. Start bytes < 0x80 index
	// Placements; 0x80|k is offset k%13-3. Size bytes < 0x80 are the
	// profile's size, 0xc0 unspecified, 0x80|k is k%11-1.
	return []fuzzSeed{
		{"empty input", []byte{}, true},
		{"no instances", []byte{a100}, true},
		{"7g@0", []byte{a100, 6, 0, 0}, true},
		{"all-balanced 3g@4 2g@0 1g@2 1g@3", []byte{a100, 4, 1, 0, 3, 0, 0, 0, 2, 0, 0, 3, 0}, true},
		{"7x1g on A100-80GB", []byte{a100x80, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 6, 0}, true},
		{"3g size unspecified", []byte{a100, 4, 0, 0xc0}, true},
		{"A30 1g@0 1g@1 2g@2", []byte{a30, 0, 0, 0, 0, 1, 0, 2, 1, 0}, true},
		{"3g@0 + 4g@0 overlap", []byte{a100, 4, 0, 0, 5, 0, 0}, false},
		{"3g@2 start not allowed", []byte{a100, 4, 0x80 | 5, 0}, false},
		{"1g@7", []byte{a100, 0, 0x80 | 10, 0}, false},
		{"1g.10gb@7 start + outside", []byte{a100, 2, 0x80 | 10, 0}, false},
		{"unknown profile", []byte{a100, 7, 0, 0}, false},
		{"3g size 2", []byte{a100, 4, 0, 0x80 | 3}, false},
		{"4g@0 3g@4 1g@0 compute + overlap", []byte{a100, 5, 0, 0, 4, 1, 0, 0, 0, 0}, false},
		{"three 3g", []byte{a100, 4, 0, 0, 4, 1, 0, 4, 0, 0}, false},
		{"two 1g+me", []byte{a100, 1, 0, 0, 1, 1, 0}, false},
		{"extreme starts", []byte{a100, 0, 0xff, 3, 6, 0xfe, 0}, false},
		{"A30 1g+me + 2g+me", []byte{a30, 1, 0, 0, 3, 1, 0}, false},
		{"A30 4g + 1g overlap", []byte{a30, 4, 0, 0, 0, 0, 0}, false},
	}
}

func TestFuzzSeeds(t *testing.T) {
	models := topology.NewCatalog().Models()
	for _, s := range fuzzSeeds(t, models) {
		m, l := decodeLayout(models, s.data)
		if err := m.ValidateLayout(l); (err == nil) != s.valid {
			t.Errorf("seed %q decodes to %s %v: err = %v, want valid = %v", s.desc, m.Name, l, err, s.valid)
		}
		checkAgainstReference(t, m, l)
	}
}

func FuzzValidateLayout(f *testing.F) {
	models := topology.NewCatalog().Models()
	for _, s := range fuzzSeeds(f, models) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, instances := decodeLayout(models, data)
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("ValidateLayout(%s, %v) panicked: %v", m.Name, instances, r)
			}
		}()
		checkAgainstReference(t, m, instances)
	})
}

// TestValidateLayoutMatchesReference runs the fuzz cross-check exhaustively
// on small layouts under plain `go test`: on every model, every pair of
// instances over all profiles (plus an unknown one) and starts -1..MemorySlices,
// and every set of up to three allowed placements (all sets on the A30).
func TestValidateLayoutMatchesReference(t *testing.T) {
	valid := 0
	for _, m := range topology.NewCatalog().Models() {
		names := append(m.ProfileNames(), "bogus")
		var singles []topology.GPUInstance
		for _, n := range names {
			size := 1
			if p, ok := m.Profile(n); ok {
				size = p.MemorySlices
			}
			for s := -1; s <= m.MemorySlices; s++ {
				singles = append(singles, topology.GPUInstance{Profile: n, Start: s, Size: size})
			}
		}
		for _, a := range singles {
			checkAgainstReference(t, m, []topology.GPUInstance{a})
			for _, b := range singles {
				checkAgainstReference(t, m, []topology.GPUInstance{a, b})
			}
		}

		var placed []topology.GPUInstance
		for _, p := range m.Profiles {
			for _, s := range p.Placements {
				placed = append(placed, topology.GPUInstance{Profile: p.Name, Start: s, Size: p.MemorySlices})
			}
		}
		check := func(l []topology.GPUInstance) {
			checkAgainstReference(t, m, l)
			if len(refProblems(m, l)) == 0 {
				valid++
			}
		}
		if len(placed) <= 16 {
			for mask := 0; mask < 1<<len(placed); mask++ {
				var l []topology.GPUInstance
				for i := range placed {
					if mask&(1<<i) != 0 {
						l = append(l, placed[i])
					}
				}
				check(l)
			}
		} else {
			for i := range placed {
				for j := i + 1; j < len(placed); j++ {
					for k := j + 1; k < len(placed); k++ {
						check([]topology.GPUInstance{placed[i], placed[j], placed[k]})
					}
				}
			}
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d valid layouts among the exhaustive sets", valid)

	// Random larger layouts, deterministic seed.
	models := topology.NewCatalog().Models()
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1+3*maxFuzzInsts)
	for range 20000 {
		n := 1 + r.IntN(len(buf))
		for i := range n {
			buf[i] = byte(r.Uint32())
		}
		m, l := decodeLayout(models, buf[:n])
		checkAgainstReference(t, m, l)
		if t.Failed() {
			return
		}
	}
}

// TestValidateLayoutHugeStart pins that extreme offsets never panic and are
// always rejected.
func TestValidateLayoutHugeStart(t *testing.T) {
	for _, m := range topology.NewCatalog().Models() {
		for _, p := range m.Profiles {
			for _, start := range []int{math.MaxInt, math.MaxInt - 1, math.MaxInt - p.MemorySlices + 1, math.MinInt, math.MinInt + 1} {
				err := m.ValidateLayout([]topology.GPUInstance{{Profile: p.Name, Start: start, Size: p.MemorySlices}})
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("start %d not allowed", start)) {
					t.Errorf("%s %s@%d: err = %v", m.Name, p.Name, start, err)
				}
			}
		}
	}
}
