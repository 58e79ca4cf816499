// Package dpconfig reads the NVIDIA k8s-device-plugin's config file (format
// version v1, the file behind --config-file / CONFIG_FILE, usually a
// ConfigMap key mounted by the GPU Operator or the plugin's Helm chart) and
// turns it into the part of gpuslice's topology model that the plugin's
// configuration decides: the MIG strategy, the device ID strategy, the
// shared-devices allocation policy and the time-slicing section.
//
// The parser follows the plugin's own decoding (sigs.k8s.io/yaml into
// api/config/v1): keys of the plain structs (the top level, flags,
// flags.plugin, sharing) match case-insensitively as encoding/json does, while
// the hand-written decoders of sharing.timeSlicing and its resources match
// exactly. Where the plugin would refuse to start, Parse returns an error
// that wraps ErrInvalid. Where the plugin would start but do something
// gpuslice cannot model, or would silently ignore what the file asks for, it
// returns an error that wraps ErrUnsupported; the exporter then publishes the
// node as Degraded with that message instead of guessing. Every error names
// the field at fault, e.g.
//
//	sharing.timeSlicing.resources[1].replicas: must be >= 2, got 0
//
// What gpuslice cannot model (ErrUnsupported):
//   - MPS sharing (sharing.mps);
//   - a devices subset in a time-slicing resource (devices: <count> or a
//     list): the stock plugin ignores it and shares every device, a patched
//     build may honour it;
//   - a custom rename in a time-slicing resource, unless WithCustomRename is
//     given: the stock plugin (DisableResourceNamingInConfig) ignores it and
//     advertises <name> or, with renameByDefault, <name>.shared;
//   - the top-level resources section (custom names and device patterns),
//     which the stock plugin ignores;
//   - time-slicing of anything but nvidia.com/gpu and nvidia.com/mig-<profile>,
//     a resource listed twice, more than MaxReplicas replicas;
//   - unknown keys under sharing, sharing.timeSlicing and its resources
//     (the plugin ignores them: a misspelt or mis-cased renameByDefault would
//     silently do nothing).
//
// Unknown keys elsewhere (flags the scheduler does not care about, gfd, imex)
// are ignored, as the plugin ignores them.
package dpconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/gpuslice/gpuslice/pkg/topology"
)

// Version is the only config file version the parser (and the plugin) knows.
const Version = "v1"

// MaxReplicas is the largest time-slicing replica count gpuslice accepts. The
// plugin has no limit; gpuslice refuses more rather than model billions of
// replica IDs.
const MaxReplicas = 1024

// MaxFileSize bounds what Load reads; a ConfigMap cannot hold more than 1 MiB.
const MaxFileSize = 1 << 20

// resourcePrefix is what the plugin prepends to resource names given without
// a domain ("gpu" -> "nvidia.com/gpu"), and maxResourceNameLength the
// plugin's limit on a fully qualified name.
const (
	resourcePrefix        = "nvidia.com"
	maxResourceNameLength = 63
)

var (
	// ErrInvalid is wrapped by errors for files the device plugin itself
	// rejects at start-up (it would crash-loop or fall back to failing).
	ErrInvalid = errors.New("invalid device plugin config")
	// ErrUnsupported is wrapped by errors for valid settings gpuslice cannot
	// model.
	ErrUnsupported = errors.New("not supported by gpuslice")
)

// Config is what gpuslice needs from the device plugin's configuration.
type Config struct {
	MIGStrategy      topology.MIGStrategy
	DeviceIDStrategy topology.DeviceIDStrategy
	AllocationPolicy topology.AllocationPolicy
	// TimeSlicing is nil when the plugin does not time-slice. Renamed
	// resources follow topology.TimeSlicing's rules: RenameByDefault gives
	// <name>.shared, and Rename is set only for a custom name (which needs
	// WithCustomRename).
	TimeSlicing *topology.TimeSlicing
}

// Defaults returns the plugin's defaults: the settings of a node whose plugin
// runs without a config file and without flags.
func Defaults() *Config {
	return &Config{
		MIGStrategy:      topology.MIGStrategyNone,
		DeviceIDStrategy: topology.DeviceIDUUID,
		AllocationPolicy: topology.PolicyDistributed,
	}
}

// ApplyTo copies the configuration onto a node (deep-copying TimeSlicing).
func (c *Config) ApplyTo(n *topology.Node) {
	n.MIGStrategy = c.MIGStrategy
	n.DeviceIDStrategy = c.DeviceIDStrategy
	n.AllocationPolicy = c.AllocationPolicy
	n.TimeSlicing = nil
	if c.TimeSlicing != nil {
		ts := *c.TimeSlicing
		ts.Resources = slices.Clone(ts.Resources)
		n.TimeSlicing = &ts
	}
}

// Overrides are settings the plugin takes from its command line or
// environment; they win over the config file, as in the plugin. An empty
// field is unset.
type Overrides struct {
	// MIGStrategy is --mig-strategy / MIG_STRATEGY.
	MIGStrategy string
	// DeviceIDStrategy is --device-id-strategy / DEVICE_ID_STRATEGY.
	DeviceIDStrategy string
	// AllocationPolicy is --shared-devices-allocation-policy /
	// SHARED_DEVICES_ALLOCATION_POLICY.
	AllocationPolicy string
}

// Environment variables of the device plugin that Overrides mirror.
const (
	EnvMIGStrategy      = "MIG_STRATEGY"
	EnvDeviceIDStrategy = "DEVICE_ID_STRATEGY"
	EnvAllocationPolicy = "SHARED_DEVICES_ALLOCATION_POLICY"
)

// OverridesFromEnv reads the plugin's environment variables through lookup
// (os.LookupEnv, or a lookup over the plugin container's env). Empty values
// count as unset.
func OverridesFromEnv(lookup func(string) (string, bool)) Overrides {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	return Overrides{
		MIGStrategy:      get(EnvMIGStrategy),
		DeviceIDStrategy: get(EnvDeviceIDStrategy),
		AllocationPolicy: get(EnvAllocationPolicy),
	}
}

// Option changes how Parse and Load read a file.
type Option func(*options)

type options struct {
	overrides    Overrides
	customRename bool
}

// WithOverrides applies the plugin's command-line flags or environment on top
// of the file.
func WithOverrides(o Overrides) Option { return func(p *options) { p.overrides = o } }

// WithCustomRename declares that the node's device plugin honours
// sharing.timeSlicing.resources[].rename (a patched build whose
// DisableResourceNamingInConfig is a no-op). Without it a custom rename is
// ErrUnsupported, because the stock plugin ignores it.
func WithCustomRename() Option { return func(p *options) { p.customRename = true } }

// FieldError is one problem in a config file.
type FieldError struct {
	// Field is the path of the setting, e.g. "sharing.timeSlicing.resources[1].replicas";
	// empty for problems with the file as a whole.
	Field string
	Msg   string
	// Unsupported is true for valid settings gpuslice cannot model, false for
	// settings the plugin itself rejects.
	Unsupported bool
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes errors.Is(err, ErrUnsupported) and errors.Is(err, ErrInvalid) work.
func (e *FieldError) Is(target error) bool {
	return (target == ErrUnsupported && e.Unsupported) || (target == ErrInvalid && !e.Unsupported)
}

// Error is what Parse and Load return: every problem found, in the order
// found.
type Error struct {
	// Path is the file's path when it came from Load.
	Path   string
	Fields []*FieldError
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("device plugin config")
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap returns the field errors.
func (e *Error) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}

// Load reads and parses the config file at path. A missing file is an error
// that says so and wraps fs.ErrNotExist.
func Load(path string, opts ...Option) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("device plugin config file %s is missing: %w", path, err)
		}
		return nil, fmt.Errorf("device plugin config file %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("device plugin config file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{Path: path, Fields: []*FieldError{{Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}}}
	}
	cfg, err := Parse(data, opts...)
	if e := (*Error)(nil); errors.As(err, &e) {
		e.Path = path
	}
	return cfg, err
}

// Parse parses a config file's contents (YAML or JSON). An empty file yields
// the defaults, as in the plugin. On error it returns a nil Config and an
// *Error.
func Parse(data []byte, opts ...Option) (*Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &parser{opts: o, cfg: Defaults()}
	p.parse(data)
	p.applyOverrides()
	if len(p.errs) > 0 {
		return nil, &Error{Fields: p.errs}
	}
	return p.cfg, nil
}

type parser struct {
	opts options
	cfg  *Config
	errs []*FieldError
}

func (p *parser) invalid(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) unsupported(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Unsupported: true})
}

func (p *parser) parse(data []byte) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		p.invalid("", "not valid YAML: %v", err)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return // empty document
		}
		p.invalid("", "not valid YAML: %v", err)
		return
	}
	if root == nil {
		return
	}
	top, ok := root.(map[string]any)
	if !ok {
		p.invalid("", "must be a mapping, got %s", kind(root))
		return
	}

	if v, _, ok := foldGet(top, "version"); ok && v != nil {
		s, ok := v.(string)
		switch {
		case !ok:
			p.invalid("version", "must be a string, got %s", kind(v))
			return
		case s != "" && s != Version:
			p.invalid("version", "unknown version %q (only %s is supported)", s, Version)
			return
		}
	}
	if v, k, ok := foldGet(top, "flags"); ok {
		p.flags(k, v)
	}
	if v, k, ok := foldGet(top, "resources"); ok {
		p.resources(k, v)
	}
	if v, k, ok := foldGet(top, "sharing"); ok {
		p.sharing(k, v)
	}
}

func (p *parser) flags(field string, v any) {
	m, ok := p.object(field, v)
	if !ok {
		return
	}
	// A setting the command line or environment overrides is not validated,
	// as in the plugin, which replaces it before validating.
	if s, f, ok := p.optString(m, field, "migStrategy"); ok && p.opts.overrides.MIGStrategy == "" {
		if ms, ok := migStrategy(s); ok {
			p.cfg.MIGStrategy = ms
		} else {
			p.invalid(f, "unknown MIG strategy %q (want none, single or mixed)", s)
		}
	}
	p.optBool(m, field, "failOnInitError")
	p.optString(m, field, "nvidiaDriverRoot")
	v, k, ok := foldGet(m, "plugin")
	if !ok {
		return
	}
	field += "." + k
	pm, ok := p.object(field, v)
	if !ok {
		return
	}
	p.optBool(pm, field, "passDeviceSpecs")
	for _, k := range []string{"cdiAnnotationPrefix", "nvidiaCTKPath", "containerDriverRoot"} {
		p.optString(pm, field, k)
	}
	if v, k, ok := foldGet(pm, "deviceListStrategy"); ok && v != nil {
		p.deviceListStrategy(field+"."+k, v)
	}
	if s, f, ok := p.optString(pm, field, "deviceIDStrategy"); ok && p.opts.overrides.DeviceIDStrategy == "" {
		if ds, ok := deviceIDStrategy(s); ok {
			p.cfg.DeviceIDStrategy = ds
		} else {
			p.invalid(f, "unknown device ID strategy %q (want uuid or index)", s)
		}
	}
	if s, f, ok := p.optString(pm, field, "sharedDevicesAllocationPolicy"); ok && p.opts.overrides.AllocationPolicy == "" {
		if ap, ok := allocationPolicy(s); ok {
			p.cfg.AllocationPolicy = ap
		} else {
			p.invalid(f, "unknown allocation policy %q (want distributed, packed or spread)", s)
		}
	}
}

var deviceListStrategies = []string{"envvar", "volume-mounts", "cdi-annotations", "cdi-cri"}

func (p *parser) deviceListStrategy(field string, v any) {
	var vals []string
	switch t := v.(type) {
	case string:
		vals = []string{t}
	case []any:
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				p.invalid(fmt.Sprintf("%s[%d]", field, i), "must be a string, got %s", kind(e))
				return
			}
			vals = append(vals, s)
		}
	default:
		p.invalid(field, "must be a string or a list of strings, got %s", kind(v))
		return
	}
	for _, s := range vals {
		if !slices.Contains(deviceListStrategies, s) {
			p.invalid(field, "unknown device list strategy %q (want one of %s)", s, strings.Join(deviceListStrategies, ", "))
		}
	}
}

// resources is the top-level resources section: custom resource names and
// device-name patterns.
func (p *parser) resources(field string, v any) {
	m, ok := p.object(field, v)
	if !ok {
		return
	}
	for _, k := range sortedKeys(m) {
		if l, ok := m[k].([]any); ok && len(l) > 0 {
			p.unsupported(field+"."+k, "custom resource naming is ignored by the stock device plugin and cannot be modelled by gpuslice")
		}
	}
}

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

func (p *parser) applyOverrides() {
	o := p.opts.overrides
	if o.MIGStrategy != "" {
		if ms, ok := migStrategy(o.MIGStrategy); ok {
			p.cfg.MIGStrategy = ms
		} else {
			p.invalid("--mig-strategy ("+EnvMIGStrategy+")", "unknown MIG strategy %q (want none, single or mixed)", o.MIGStrategy)
		}
	}
	if o.DeviceIDStrategy != "" {
		if ds, ok := deviceIDStrategy(o.DeviceIDStrategy); ok {
			p.cfg.DeviceIDStrategy = ds
		} else {
			p.invalid("--device-id-strategy ("+EnvDeviceIDStrategy+")", "unknown device ID strategy %q (want uuid or index)", o.DeviceIDStrategy)
		}
	}
	if o.AllocationPolicy != "" {
		if ap, ok := allocationPolicy(o.AllocationPolicy); ok {
			p.cfg.AllocationPolicy = ap
		} else {
			p.invalid("--shared-devices-allocation-policy ("+EnvAllocationPolicy+")", "unknown allocation policy %q (want distributed, packed or spread)", o.AllocationPolicy)
		}
	}
}

func migStrategy(s string) (topology.MIGStrategy, bool) {
	switch ms := topology.MIGStrategy(s); ms {
	case topology.MIGStrategyNone, topology.MIGStrategySingle, topology.MIGStrategyMixed:
		return ms, true
	}
	return "", false
}

func deviceIDStrategy(s string) (topology.DeviceIDStrategy, bool) {
	switch ds := topology.DeviceIDStrategy(s); ds {
	case topology.DeviceIDUUID, topology.DeviceIDIndex:
		return ds, true
	}
	return "", false
}

// allocationPolicy accepts the plugin's policies: distributed and packed
// (v0.20.0), spread (main branch).
func allocationPolicy(s string) (topology.AllocationPolicy, bool) {
	switch ap := topology.AllocationPolicy(s); ap {
	case topology.PolicyDistributed, topology.PolicyPacked, topology.PolicySpread:
		return ap, true
	}
	return "", false
}

// object checks that v is a mapping; null counts as an empty one.
func (p *parser) object(field string, v any) (map[string]any, bool) {
	switch t := v.(type) {
	case nil:
		return map[string]any{}, true
	case map[string]any:
		return t, true
	}
	p.invalid(field, "must be a mapping, got %s", kind(v))
	return nil, false
}

// optString reads an optional string of a struct-decoded section; null is unset.
func (p *parser) optString(m map[string]any, parent, key string) (val, field string, ok bool) {
	v, k, found := foldGet(m, key)
	if !found || v == nil {
		return "", "", false
	}
	field = parent + "." + k
	s, isStr := v.(string)
	if !isStr {
		p.invalid(field, "must be a string, got %s", kind(v))
		return "", field, false
	}
	return s, field, true
}

func (p *parser) optBool(m map[string]any, parent, key string) {
	v, k, found := foldGet(m, key)
	if !found || v == nil {
		return
	}
	if _, ok := v.(bool); !ok {
		p.invalid(parent+"."+k, "must be a boolean, got %s", kind(v))
	}
}

// exactBool reads a boolean of a hand-decoded section (exact key; null is false).
func (p *parser) exactBool(m map[string]any, parent, key string) bool {
	v, found := m[key]
	if !found || v == nil {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		p.invalid(parent+"."+key, "must be a boolean, got %s", kind(v))
	}
	return b
}

func (p *parser) integer(field string, v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		p.invalid(field, "must be an integer, got %s", kind(v))
		return 0, false
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		p.invalid(field, "must be an integer, got %s", n)
		return 0, false
	}
	return i, true
}

// unknownKeys reports keys of a hand-decoded section that the plugin would
// ignore.
func (p *parser) unknownKeys(field string, m map[string]any, known []string) {
	for _, k := range sortedKeys(m) {
		if slices.Contains(known, k) {
			continue
		}
		hint := ""
		for _, want := range known {
			if strings.EqualFold(k, want) {
				hint = fmt.Sprintf(" (the key is case-sensitive: did you mean %s?)", want)
			}
		}
		p.unsupported(field+"."+k, "unknown field, which the device plugin ignores%s", hint)
	}
}

// foldGet looks a key up as encoding/json matches struct fields: exactly, or
// else case-insensitively. It returns the key as written in the file.
func foldGet(m map[string]any, key string) (any, string, bool) {
	if v, ok := m[key]; ok {
		return v, key, true
	}
	for _, k := range sortedKeys(m) {
		if strings.EqualFold(k, key) {
			return m[k], k, true
		}
	}
	return nil, "", false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func kind(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number (" + t.String() + ")"
	case string:
		return fmt.Sprintf("a string (%q)", t)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}
