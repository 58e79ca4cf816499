package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	for _, tc := range []struct {
		expr, err string
		want      []string
	}{
		{expr: `max(gpuslice_scheduler_empty_gpu_nodes)`, want: []string{"gpuslice_scheduler_empty_gpu_nodes"}},
		{expr: `sum by (le) (rate(a_bucket{job="x"}[$__rate_interval])) / on() group_left sum(b) or vector(0)`, want: []string{"a_bucket", "b"}},
		{expr: `{__name__="c", node=~"$node"} offset 5m`, want: []string{"c"}},
		{expr: `time() - max by (instance) (d)`, want: []string{"d"}},
		{expr: `sum(rate(e[5m]`, err: "unclosed"},
		{expr: `sum({node="x"})`, err: "names no metric"},
		{expr: ``, err: "empty query"},
	} {
		got, err := Metrics(tc.expr)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.expr, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
}

func TestQueriesWalksRows(t *testing.T) {
	f := filepath.Join(t.TempDir(), "d.json")
	os.WriteFile(f, []byte(`{"panels": [
		{"type": "row", "title": "r", "panels": [{"type": "timeseries", "title": "in row", "targets": [{"refId": "A", "expr": "x"}]}]},
		{"type": "text", "title": "notes"},
		{"type": "stat", "title": "top", "targets": [{"refId": "A", "expr": "y"}, {"refId": "B", "expr": "z + y"}]}
	], "templating": {"list": [
		{"name": "n", "type": "query", "query": {"query": "label_values(v{a=\"b\"}, node)"}},
		{"name": "m", "type": "query", "query": "label_values(node)"},
		{"name": "q", "type": "query", "query": "query_result(max by (x) (w))"},
		{"name": "t", "type": "textbox", "query": "anything"}
	]}}`), 0o644)
	qs, err := queries(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, q := range qs {
		got = append(got, q.Panel+":"+strings.Join(q.Metrics, ","))
	}
	if want := []string{"in row:x", "top:y", "top:y,z", "variable $n:v", "variable $q:w"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	os.WriteFile(f, []byte(`{"panels": [{"type": "timeseries", "title": "empty"}]}`), 0o644)
	if _, err := queries(f); err == nil || !strings.Contains(err.Error(), `panel "empty" has no query`) {
		t.Fatalf("panel without a query: %v", err)
	}
}
