// Package smoke holds a quick test of the integration-test control plane
// (test/framework): a real etcd and kube-apiserver, ServiceAccount tokens and
// RBAC, fake GPU nodes and kubectl. Run `hack/control-plane.sh build` first.
package smoke
