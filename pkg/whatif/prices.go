package whatif

import (
	"fmt"
	"math"
	"os"
	"sort"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Prices are on-demand prices in dollars per hour, keyed by instance type
// (the node label node.kubernetes.io/instance-type). The file form, YAML or
// JSON, is a flat map:
//
//	p4d.24xlarge: 32.77
//	p5.48xlarge: 98.32
//
// An instance-type file with a top-level types list, each entry with a name
// and price.usdPerHour (the autoscaler tests' GPU instance types), is read
// too; its other fields are ignored.
type Prices map[string]float64

// instanceTypeFile is the instance-type list form.
type instanceTypeFile struct {
	Types []struct {
		Name  string `json:"name"`
		Price *struct {
			USDPerHour *float64 `json:"usdPerHour"`
		} `json:"price"`
	} `json:"types"`
}

// ParsePrices reads a price file. Every price must be a finite, non-negative
// number.
func ParsePrices(data []byte) (Prices, error) {
	var p Prices
	var probe map[string]any
	if err := yaml.Unmarshal(data, &probe); err == nil && probe["types"] != nil {
		if _, isList := probe["types"].([]any); isList {
			var f instanceTypeFile
			if err := yaml.Unmarshal(data, &f); err != nil {
				return nil, fmt.Errorf("prices: instance types: %w", err)
			}
			p = Prices{}
			for i, t := range f.Types {
				if t.Name == "" || t.Price == nil || t.Price.USDPerHour == nil {
					return nil, fmt.Errorf("prices: types[%d] (%q) has no name or no price.usdPerHour", i, t.Name)
				}
				p[t.Name] = *t.Price.USDPerHour
			}
		}
	}
	if p == nil {
		if err := yaml.UnmarshalStrict(data, &p); err != nil {
			return nil, fmt.Errorf("prices: want a map of instance type to dollars per hour: %w", err)
		}
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("prices: no instance types")
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := p[k]; math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || k == "" {
			return nil, fmt.Errorf("prices: %q: %v is not a price in dollars per hour", k, v)
		}
	}
	return p, nil
}

// LoadPrices reads a price file.
func LoadPrices(path string) (Prices, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := ParsePrices(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Lookup returns an instance type's price per hour.
func (p Prices) Lookup(instanceType string) (float64, bool) {
	if p == nil || instanceType == "" {
		return 0, false
	}
	v, ok := p[instanceType]
	return v, ok
}

// monthly sums the monthly price of the named nodes and counts those
// without a price.
func (p Prices) monthly(nodes map[string]*v1.Node, names []string) (dollars float64, unpriced int) {
	for _, name := range names {
		n := nodes[name]
		if n == nil {
			unpriced++
			continue
		}
		v, ok := p.Lookup(n.Labels[LabelInstanceType])
		if !ok {
			unpriced++
			continue
		}
		dollars += v * HoursPerMonth
	}
	return math.Round(dollars*100) / 100, unpriced
}
