package fake

import "fmt"

// NVML device names of the fixture GPUs.
const (
	ProductA100_40GB = "NVIDIA A100-SXM4-40GB"
	ProductA100_80GB = "NVIDIA A100-SXM4-80GB"
	ProductH100_80GB = "NVIDIA H100 80GB HBM3"
	ProductH200      = "NVIDIA H200"
	ProductA30       = "NVIDIA A30"
)

// Fixture is a homogeneous node: GPUs of one product, each with the same
// initial MIG layout (none when MIG is empty).
type Fixture struct {
	// Name identifies the fixture, e.g. "a100-40gb-mig".
	Name    string
	Product string
	GPUs    int
	MIG     []string
}

// Fixtures returns the standard nodes: for A100-40GB, A100-80GB, H100-80GB
// and H200 eight GPUs, for A30 four, each once with MIG disabled and once
// in NVIDIA mig-parted's all-balanced layout. The slices are fresh copies.
func Fixtures() []Fixture {
	return []Fixture{
		{Name: "a100-40gb", Product: ProductA100_40GB, GPUs: 8},
		{Name: "a100-40gb-mig", Product: ProductA100_40GB, GPUs: 8, MIG: []string{"1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"}},
		{Name: "a100-80gb", Product: ProductA100_80GB, GPUs: 8},
		{Name: "a100-80gb-mig", Product: ProductA100_80GB, GPUs: 8, MIG: []string{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}},
		{Name: "h100-80gb", Product: ProductH100_80GB, GPUs: 8},
		{Name: "h100-80gb-mig", Product: ProductH100_80GB, GPUs: 8, MIG: []string{"1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"}},
		{Name: "h200", Product: ProductH200, GPUs: 8},
		{Name: "h200-mig", Product: ProductH200, GPUs: 8, MIG: []string{"1g.18gb", "1g.18gb", "2g.35gb", "3g.71gb"}},
		{Name: "a30", Product: ProductA30, GPUs: 4},
		{Name: "a30-mig", Product: ProductA30, GPUs: 4, MIG: []string{"1g.6gb", "1g.6gb", "2g.12gb"}},
	}
}

// FixtureByName returns the fixture of that name.
func FixtureByName(name string) (Fixture, bool) {
	for _, fx := range Fixtures() {
		if fx.Name == name {
			return fx, true
		}
	}
	return Fixture{}, false
}

// Specs returns one GPUSpec per GPU of the fixture.
func (fx Fixture) Specs() []GPUSpec {
	out := make([]GPUSpec, fx.GPUs)
	for i := range out {
		out[i] = GPUSpec{Product: fx.Product, MIG: append([]string(nil), fx.MIG...)}
	}
	return out
}

// New builds the fixture's node under nodeName. Its UUIDs match those of
// fixtures.Build for a Spec with the same name, product, GPU count and MIG
// profiles.
func (fx Fixture) New(nodeName string) (*Fake, error) {
	f, err := New(nodeName, fx.Specs())
	if err != nil {
		return nil, fmt.Errorf("fixture %s: %w", fx.Name, err)
	}
	return f, nil
}
