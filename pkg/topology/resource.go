package topology

import (
	"strconv"
	"strings"
)

// MIGResourceName is the mixed-strategy resource name of a MIG profile:
// "3g.40gb" -> "nvidia.com/mig-3g.40gb".
func MIGResourceName(profile string) string { return MIGResourcePrefix + profile }

// ProfileFromResource returns the MIG profile of a mixed-strategy resource
// name: "nvidia.com/mig-3g.40gb" -> "3g.40gb", true.
func ProfileFromResource(resource string) (string, bool) {
	p, ok := strings.CutPrefix(resource, MIGResourcePrefix)
	if !ok || p == "" {
		return "", false
	}
	return p, true
}

// ReplicaID is the device ID the plugin advertises for replica n of a
// time-sliced device.
func ReplicaID(deviceID string, replica int) string {
	return deviceID + ReplicaSeparator + strconv.Itoa(replica)
}

// BaseDeviceID is the device a device ID names: the ID without its
// time-slicing replica suffix ("<id>::<n>" → "<id>").
func BaseDeviceID(id string) string {
	base, _, _ := strings.Cut(id, ReplicaSeparator)
	return base
}

// SplitReplicaID splits "<id>::<n>" into its device ID and replica number.
// IDs without a replica annotation return replica -1.
func SplitReplicaID(id string) (deviceID string, replica int, ok bool) {
	base, rep, found := strings.Cut(id, ReplicaSeparator)
	if !found {
		return id, -1, id != ""
	}
	n, err := strconv.Atoi(rep)
	if err != nil || n < 0 || base == "" || strconv.Itoa(n) != rep {
		return "", 0, false
	}
	return base, n, true
}
