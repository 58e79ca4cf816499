package allocator

// The class-by-class stranding of fragmentationGain is what the next
// pod cannot use. It charges a large gap on a shared GPU for every class
// too big for it, although smaller pods will fill it later, and a sliver
// (a leftover that almost no pod fits) at about its size, although the
// sliver stays idle for good. The gap is a delay; the sliver is a loss.
// Weighed by the next pod only, the score fills gaps down to slivers too
// readily: a 0.23-GPU pod goes into a 0.35 gap and leaves 0.12 that nothing
// fills, where a 0.25 gap elsewhere would have left 0.02. sliverGain adds
// the change in the capacity left in slivers, so that a placement that
// leaves less of it for good wins among those that strand alike for the
// next pod.

// sliverFraction is the share of a GPU under which a free piece of a
// partly used GPU is a sliver. Sharing pods rarely ask for less than a
// fifth of a GPU (on the openb trace, 1.3 % of the pods do).
const sliverFraction = 0.2

// sliver is the part of f free replicas of device u that is a sliver, in
// GPU-equivalents: all of it when 0 < f < sliverFraction of the device.
func sliver(u *unit, f int32) float64 {
	if f > 0 && float64(f) < sliverFraction*float64(u.replicas) {
		return float64(f) * u.weight
	}
	return 0
}

// sliverGain is w times how much the placement (taking deltas) lowers the
// node's sliver capacity: negative when it leaves a sliver, positive when
// it fills one. 0 when w is 0. Only the devices the placement takes from
// change, so only they are looked at.
func (v freeView) sliverGain(w float64) float64 {
	if w == 0 {
		return 0
	}
	g := 0.0
	for i, d := range v.units {
		u := &v.s.node.units[d.unit]
		before := v.s.unitFree(d.unit, v.units[:i])
		g += sliver(u, before) - sliver(u, before-d.count)
	}
	return w * g
}
