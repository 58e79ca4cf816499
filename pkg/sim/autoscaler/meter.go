package autoscaler

import (
	"fmt"
	"time"
)

// Meter bills nodes from launch to deletion: node-hours, dollars, the peak
// node count and the node count over time.
type Meter struct {
	live    map[string]meterNode
	closed  float64 // node-seconds of deleted nodes
	dollars float64 // of deleted nodes
	peak    int
	// Steps is the node count after each change, in time order.
	Steps []Step
}

// Step is the node count from At on.
type Step struct {
	At    time.Duration
	Nodes int
}

type meterNode struct {
	from  time.Duration
	price float64
}

// NewMeter returns a meter with no node.
func NewMeter() *Meter { return &Meter{live: map[string]meterNode{}} }

// Observe bills the model's Launched and Deleted events.
func (m *Meter) Observe(events []Event) error {
	for _, e := range events {
		switch e.Kind {
		case Launched:
			price := 0.0
			if e.Type != nil {
				price = e.Type.Price
			}
			if err := m.Launch(e.At, e.Node, price); err != nil {
				return err
			}
		case Deleted:
			if err := m.Delete(e.At, e.Node); err != nil {
				return err
			}
		}
	}
	return nil
}

// Launch starts billing a node at at, at price USD per hour.
func (m *Meter) Launch(at time.Duration, node string, price float64) error {
	if _, dup := m.live[node]; dup {
		return fmt.Errorf("meter: node %s launched twice", node)
	}
	if n := len(m.Steps); n > 0 && at < m.Steps[n-1].At {
		return fmt.Errorf("meter: launch of %s at %s before the last change at %s", node, at, m.Steps[n-1].At)
	}
	m.live[node] = meterNode{from: at, price: price}
	m.peak = max(m.peak, len(m.live))
	m.Steps = append(m.Steps, Step{At: at, Nodes: len(m.live)})
	return nil
}

// Delete stops billing a node at at.
func (m *Meter) Delete(at time.Duration, node string) error {
	n, ok := m.live[node]
	if !ok {
		return fmt.Errorf("meter: node %s deleted but not running", node)
	}
	if at < n.from {
		return fmt.Errorf("meter: node %s deleted at %s before its launch at %s", node, at, n.from)
	}
	if k := len(m.Steps); k > 0 && at < m.Steps[k-1].At {
		return fmt.Errorf("meter: deletion of %s at %s before the last change at %s", node, at, m.Steps[k-1].At)
	}
	delete(m.live, node)
	s := (at - n.from).Seconds()
	m.closed += s
	m.dollars += s / 3600 * n.price
	m.Steps = append(m.Steps, Step{At: at, Nodes: len(m.live)})
	return nil
}

// NodeHours is the node-hours billed up to end (nodes still running are
// billed until end).
func (m *Meter) NodeHours(end time.Duration) float64 {
	s := m.closed
	for _, n := range m.live {
		s += max(0, end-n.from).Seconds()
	}
	return s / 3600
}

// Dollars is the bill up to end.
func (m *Meter) Dollars(end time.Duration) float64 {
	d := m.dollars
	for _, n := range m.live {
		d += max(0, end-n.from).Seconds() / 3600 * n.price
	}
	return d
}

// Peak is the most nodes running at once.
func (m *Meter) Peak() int { return m.peak }

// Running is the number of nodes billed now.
func (m *Meter) Running() int { return len(m.live) }
