package dpconfig

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

func (p *parser) sharing(field string, v any) {
	m, ok := p.object(field, v)
	if !ok {
		return
	}
	known := map[string]bool{}
	if v, k, ok := foldGet(m, "timeSlicing"); ok {
		known[k] = true
		p.timeSlicing(field+"."+k, v)
	}
	if v, k, ok := foldGet(m, "mps"); ok {
		known[k] = true
		if v != nil {
			p.unsupported(field+"."+k, "MPS sharing is not supported by gpuslice")
		}
	}
	for _, k := range sortedKeys(m) {
		if !known[k] {
			p.unsupported(field+"."+k, "unknown sharing mode (the device plugin ignores it; gpuslice knows timeSlicing only)")
		}
	}
}

// timeSlicing follows the plugin's ReplicatedResources.UnmarshalJSON: exact
// key names, resources required.
func (p *parser) timeSlicing(field string, v any) {
	if v == nil {
		p.invalid(field, "no resources specified")
		return
	}
	m, ok := p.object(field, v)
	if !ok {
		return
	}
	ts := &topology.TimeSlicing{}
	known := []string{"renameByDefault", "failRequestsGreaterThanOne", "resources"}
	p.unknownKeys(field, m, known)
	ts.RenameByDefault = p.exactBool(m, field, "renameByDefault")
	ts.FailRequestsGreaterThanOne = p.exactBool(m, field, "failRequestsGreaterThanOne")

	rf := field + ".resources"
	list, ok := m["resources"].([]any)
	switch {
	case m["resources"] == nil:
		p.invalid(field, "no resources specified")
		return
	case !ok:
		p.invalid(rf, "must be a list, got %s", kind(m["resources"]))
		return
	case len(list) == 0:
		p.invalid(rf, "no resources specified")
		return
	}
	seen := map[string]int{}
	before := len(p.errs)
	for i, e := range list {
		r, ok := p.sharedResource(fmt.Sprintf("%s[%d]", rf, i), e, ts.RenameByDefault)
		if !ok {
			continue
		}
		if j, dup := seen[r.Name]; dup {
			p.unsupported(fmt.Sprintf("%s[%d].name", rf, i), "%s is already shared by %s[%d]", r.Name, rf, j)
			continue
		}
		seen[r.Name] = i
		ts.Resources = append(ts.Resources, r)
	}
	if len(p.errs) == before {
		p.cfg.TimeSlicing = ts
	}
}

func (p *parser) sharedResource(field string, v any, renameByDefault bool) (topology.SharedResource, bool) {
	var r topology.SharedResource
	if v == nil {
		p.invalid(field, "no resource name specified")
		return r, false
	}
	m, ok := p.object(field, v)
	if !ok {
		return r, false
	}
	before := len(p.errs)
	p.unknownKeys(field, m, []string{"name", "rename", "devices", "replicas"})

	nv, ok := m["name"]
	if !ok {
		p.invalid(field, "no resource name specified")
	} else if name, ok := p.resourceName(field+".name", nv); ok {
		r.Name = name
		if name != topology.ResourceGPU {
			if _, isMIG := topology.ProfileFromResource(name); !isMIG {
				p.unsupported(field+".name", "cannot time-slice %s: gpuslice models sharing of %s and %s<profile> only", name, topology.ResourceGPU, topology.MIGResourcePrefix)
			}
		}
	}

	if dv, ok := m["devices"]; ok {
		p.devices(field+".devices", dv)
	}

	rv, ok := m["replicas"]
	if !ok {
		p.invalid(field, "no replicas specified")
	} else if n, ok := p.integer(field+".replicas", rv); ok {
		switch {
		case n < 2:
			p.invalid(field+".replicas", "must be >= 2, got %d", n)
		case n > MaxReplicas:
			p.unsupported(field+".replicas", "%d replicas is more than gpuslice supports (%d)", n, MaxReplicas)
		default:
			r.Replicas = int(n)
		}
	}

	if rn, ok := m["rename"]; ok {
		if rename, ok := p.resourceName(field+".rename", rn); ok && r.Name != "" {
			stock := r.Name
			if renameByDefault {
				stock = r.Name + topology.SharedSuffix
			}
			switch {
			case rename == stock:
				// What the stock plugin advertises anyway.
			case p.opts.customRename:
				r.Rename = rename
			default:
				p.unsupported(field+".rename", "custom name %s is ignored by the stock device plugin, which advertises %s; gpuslice cannot tell which name the node advertises", rename, stock)
			}
		}
	}
	return r, len(p.errs) == before
}

// devices follows the plugin's ReplicatedDevices.UnmarshalJSON: "all", a
// positive count, or a list of GPU indexes, MIG indexes ("<gpu>:<mig>") and
// GPU or MIG UUIDs. Anything but "all" is a subset gpuslice cannot model.
func (p *parser) devices(field string, v any) {
	switch t := v.(type) {
	case string:
		if t != "all" {
			p.invalid(field, "devices set as %q but the only valid string is \"all\"", t)
		}
		return
	case json.Number:
		n, err := strconv.ParseInt(t.String(), 10, 64)
		if err != nil || n <= 0 {
			p.invalid(field, "a device count must be a positive integer, got %s", t)
			return
		}
		p.unsupported(field, "sharing a subset of devices (count %d) is not supported: the stock device plugin shares every device and ignores it, other builds may not", n)
		return
	case []any:
		for i, e := range t {
			if !validDeviceRef(e) {
				p.invalid(fmt.Sprintf("%s[%d]", field, i), "unsupported device reference %v (want a GPU index, a MIG index <gpu>:<mig>, or a GPU or MIG UUID)", e)
				return
			}
		}
		p.unsupported(field, "sharing a subset of devices (a list of %d) is not supported: the stock device plugin shares every device and ignores it, other builds may not", len(t))
		return
	default:
		p.invalid(field, "unrecognised devices spec of type %s", kind(v))
	}
}

func validDeviceRef(e any) bool {
	var s string
	switch t := e.(type) {
	case json.Number:
		_, err := strconv.ParseUint(t.String(), 10, 0)
		return err == nil
	case string:
		s = t
	default:
		return false
	}
	if _, err := strconv.ParseUint(s, 10, 0); err == nil {
		return true
	}
	if a, b, ok := strings.Cut(s, ":"); ok {
		_, e1 := strconv.ParseUint(a, 10, 0)
		_, e2 := strconv.ParseUint(b, 10, 0)
		if e1 == nil && e2 == nil {
			return true
		}
	}
	if rest, ok := strings.CutPrefix(s, "GPU-"); ok {
		return isUUID(rest)
	}
	if rest, ok := strings.CutPrefix(s, "MIG-"); ok {
		if isUUID(rest) {
			return true
		}
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[0], "GPU-") || !isUUID(parts[0][4:]) {
			return false
		}
		for _, x := range parts[1:] {
			if _, err := strconv.ParseUint(x, 10, 0); err != nil {
				return false
			}
		}
		return true
	}
	return false
}

// isUUID accepts the canonical 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// resourceName follows the plugin's NewResourceName: a name without the
// nvidia.com/ prefix gets it; the whole must be at most 63 characters and the
// part after the prefix a DNS subdomain.
func (p *parser) resourceName(field string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		if v == nil {
			s = ""
		} else {
			p.invalid(field, "must be a string, got %s", kind(v))
			return "", false
		}
	}
	if !strings.HasPrefix(s, resourcePrefix+"/") {
		s = resourcePrefix + "/" + s
	}
	if len(s) > maxResourceNameLength {
		p.invalid(field, "fully-qualified resource name must be %d characters or less: %s", maxResourceNameLength, s)
		return "", false
	}
	_, name, _ := strings.Cut(s, "/")
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		p.invalid(field, "incorrect format for resource name %q: %s", s, strings.Join(errs, "; "))
		return "", false
	}
	return s, true
}
