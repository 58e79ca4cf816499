package dpconfig

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

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
