// Command dashboards parses the PromQL of every panel of Grafana dashboard
// files with Prometheus' own parser and prints, as JSON, each query and the
// metric names it selects. A query that does not parse, or a panel target
// without a query, is an error.
//
// It is a module of its own (hack/tools/dashboards) so that Prometheus'
// dependencies stay out of the product's go.mod; test/dashboards runs it
// and checks the names against the metrics gpuslice registers.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Query is one panel target's query and what it selects.
type Query struct {
	File    string   `json:"file"`
	Panel   string   `json:"panel"`
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

// variable is a template variable; only "query" variables query Prometheus.
type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// labelValues matches Grafana's label_values(SELECTOR, LABEL) and
// query_result(EXPR) variable queries.
var (
	labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)
	queryResult = regexp.MustCompile(`^\s*query_result\((.+)\)\s*$`)
)

// variableExpr is the PromQL of a query variable ("" when it selects no
// metric, as label_values(LABEL) does).
func variableExpr(v variable) (string, error) {
	var q string
	if err := json.Unmarshal(v.Query, &q); err != nil {
		var obj struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &obj); err != nil {
			return "", fmt.Errorf("variable %s: query is neither a string nor an object with a query", v.Name)
		}
		q = obj.Query
	}
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return m[1], nil
	}
	if m := queryResult.FindStringSubmatch(q); m != nil {
		return m[1], nil
	}
	return "", nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboards FILE.json...")
		os.Exit(2)
	}
	var out []Query
	for _, f := range os.Args[1:] {
		qs, err := queries(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dashboards:", err)
			os.Exit(1)
		}
		out = append(out, qs...)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "dashboards:", err)
		os.Exit(1)
	}
}

// queries parses every target of every panel (rows' panels included).
func queries(file string) ([]Query, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var out []Query
	var walk func(ps []panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			if err := walk(p.Panels); err != nil {
				return err
			}
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if len(p.Targets) == 0 {
				return fmt.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, t := range p.Targets {
				names, err := Metrics(t.Expr)
				if err != nil {
					return fmt.Errorf("%s: panel %q, target %s: %w", file, p.Title, t.RefID, err)
				}
				out = append(out, Query{File: file, Panel: p.Title, Expr: t.Expr, Metrics: names})
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		expr, err := variableExpr(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if expr == "" {
			continue
		}
		names, err := Metrics(expr)
		if err != nil {
			return nil, fmt.Errorf("%s: variable %s: %w", file, v.Name, err)
		}
		out = append(out, Query{File: file, Panel: "variable $" + v.Name, Expr: expr, Metrics: names})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", file)
	}
	return out, nil
}

// grafanaIntervals are Grafana's interval variables, which Prometheus' parser
// does not know; they stand for a duration.
var grafanaIntervals = regexp.MustCompile(`\$(__rate_interval|__interval|__range)|\$\{(__rate_interval|__interval|__range)\}`)

// Metrics parses expr and returns the metric names its selectors name,
// sorted. A selector without a metric name is an error: a dashboard query
// should say what it reads.
func Metrics(expr string) ([]string, error) {
	if expr == "" {
		return nil, fmt.Errorf("empty query")
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaIntervals.ReplaceAllString(expr, "5m"))
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	var selErr error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			selErr = fmt.Errorf("selector %s names no metric", vs)
			return nil
		}
		set[name] = true
		return nil
	})
	if selErr != nil {
		return nil, selErr
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
