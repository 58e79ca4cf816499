package throughput

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// apiserverRequestMetric counts the API server's requests by verb,
// resource, subresource and code.
const apiserverRequestMetric = "apiserver_request_total"

// apiRequests reads the API server's /metrics and returns its count of
// requests so far, watches aside, keyed "VERB resource[/subresource]" (e.g.
// "POST pods/binding", "PATCH pods/status", "POST events.events.k8s.io").
// It shows what each profile costs the API server per pod.
func apiRequests(ctx context.Context, kube kubernetes.Interface) (map[string]float64, error) {
	body, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	return parseRequests(body), nil
}

// parseRequests extracts apiRequests' counts from the Prometheus text format.
func parseRequests(text []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, apiserverRequestMetric+"{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		value, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			continue
		}
		labels := parseLabels(line[len(apiserverRequestMetric)+1 : end])
		if labels["verb"] == "WATCH" || labels["verb"] == "CONNECT" || labels["resource"] == "" {
			continue // long-running, or not an API object (/metrics itself)
		}
		key := labels["verb"] + " " + labels["resource"]
		if g := labels["group"]; g != "" {
			key += "." + g
		}
		if sub := labels["subresource"]; sub != "" {
			key += "/" + sub
		}
		out[key] += value
	}
	return out
}

// parseLabels parses `a="x",b="y"` (values without escaped quotes, as the
// labels read here are).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			break
		}
		name := s[:eq]
		rest := s[eq+2:]
		q := strings.IndexByte(rest, '"')
		if q < 0 {
			break
		}
		out[name] = rest[:q]
		s = strings.TrimPrefix(rest[q+1:], ",")
	}
	return out
}

// perPod returns after − before per key, divided by pods.
func perPod(before, after map[string]float64, pods int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d / float64(pods)
		}
	}
	return out
}
