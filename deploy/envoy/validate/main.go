// Command validate checks Envoy v3 bootstrap files against Envoy's own API
// schema, without an Envoy binary: the protobuf messages and validation rules
// (protoc-gen-validate) of github.com/envoyproxy/go-control-plane/envoy, the
// version of which in go.mod matches the Envoy image deploy/envoy runs.
//
//	go run . FILE.yaml...
//
// For each file it:
//
//  1. converts the YAML to JSON and decodes it as an
//     envoy.config.bootstrap.v3.Bootstrap with protojson, which rejects
//     unknown fields, wrong types and enum values, and any typed_config
//     whose "@type" is not a known message (see the imports below);
//  2. runs the generated ValidateAll rules on the bootstrap and on the
//     message inside every Any (typed_config, typed_extension_protocol_options,
//     ...), which ValidateAll itself does not open;
//  3. rejects deprecated fields and enum values, which Envoy may refuse;
//  4. checks what Envoy checks at load time and a schema cannot see: unique
//     listener and cluster names, and routes naming a defined cluster.
//
// It prints "ok: FILE" or the errors, and exits 1 when any file fails.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Every extension a typed_config of envoy.yaml names must be registered
	// here, or decoding fails with "unable to resolve". Add an import when
	// envoy.yaml starts using another extension.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

type validator interface{ ValidateAll() error }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: validate FILE.yaml...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		if errs := validateFile(path); len(errs) > 0 {
			failed = true
			for _, err := range errs {
				fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			}
		} else {
			fmt.Printf("ok: %s\n", path)
		}
	}
	if failed {
		os.Exit(1)
	}
}

func validateFile(path string) []error {
	text, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	js, err := yaml.YAMLToJSON(text)
	if err != nil {
		return []error{fmt.Errorf("YAML: %w", err)}
	}
	var bootstrap bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bootstrap); err != nil {
		return []error{fmt.Errorf("schema: %w", err)}
	}
	w := &walker{}
	w.visit(bootstrap.ProtoReflect(), "")
	w.crossReferences(&bootstrap)
	return w.errs
}

type walker struct{ errs []error }

func (w *walker) fail(at string, format string, args ...any) {
	w.errs = append(w.errs, fmt.Errorf("%s: %s", pathOrRoot(at), fmt.Sprintf(format, args...)))
}

func pathOrRoot(at string) string {
	if at == "" {
		return "(bootstrap)"
	}
	return at
}

// visit validates a message that is the root of a document or the content of
// an Any, then walks it for deprecated fields and nested Anys.
func (w *walker) visit(m protoreflect.Message, at string) {
	if v, ok := m.Interface().(validator); ok {
		if err := v.ValidateAll(); err != nil {
			w.fail(at, "%s: %v", m.Descriptor().FullName(), err)
		}
	}
	w.walk(m, at)
}

func (w *walker) walk(m protoreflect.Message, at string) {
	if m.Descriptor().FullName() == "google.protobuf.Any" {
		a := m.Interface().(*anypb.Any)
		inner, err := a.UnmarshalNew()
		if err != nil {
			w.fail(at, "%s: %v", a.GetTypeUrl(), err)
			return
		}
		w.visit(inner.ProtoReflect(), at)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		here := join(at, string(fd.Name()))
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			w.fail(here, "deprecated field of %s", m.Descriptor().FullName())
		}
		switch {
		case fd.IsList():
			list := v.List()
			for i := 0; i < list.Len(); i++ {
				w.value(fd, list.Get(i), fmt.Sprintf("%s[%d]", here, i))
			}
		case fd.IsMap():
			keys := []protoreflect.MapKey{}
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				w.value(fd.MapValue(), v.Map().Get(k), fmt.Sprintf("%s[%s]", here, k.String()))
			}
		default:
			w.value(fd, v, here)
		}
		return true
	})
}

func (w *walker) value(fd protoreflect.FieldDescriptor, v protoreflect.Value, at string) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		w.walk(v.Message(), at)
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
				w.fail(at, "deprecated value %s", ev.Name())
			}
		}
	}
}

func join(at, name string) string {
	if at == "" {
		return name
	}
	return at + "." + name
}

// crossReferences checks what Envoy checks when it loads static resources.
func (w *walker) crossReferences(b *bootstrapv3.Bootstrap) {
	static := b.GetStaticResources()
	clusters := map[string]bool{}
	for i, c := range static.GetClusters() {
		if clusters[c.GetName()] {
			w.fail(fmt.Sprintf("static_resources.clusters[%d]", i), "duplicate cluster name %q", c.GetName())
		}
		clusters[c.GetName()] = true
	}
	listeners := map[string]bool{}
	for i, l := range static.GetListeners() {
		at := fmt.Sprintf("static_resources.listeners[%d]", i)
		if listeners[l.GetName()] {
			w.fail(at, "duplicate listener name %q", l.GetName())
		}
		listeners[l.GetName()] = true
		for j, chain := range l.GetFilterChains() {
			for k, f := range chain.GetFilters() {
				here := fmt.Sprintf("%s.filter_chains[%d].filters[%d]", at, j, k)
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig() == nil || !f.GetTypedConfig().MessageIs(hcm) {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					continue // reported by visit
				}
				w.routes(hcm.GetRouteConfig(), clusters, here+".typed_config.route_config")
			}
		}
	}
}

func (w *walker) routes(rc *routev3.RouteConfiguration, clusters map[string]bool, at string) {
	for i, vh := range rc.GetVirtualHosts() {
		for j, r := range vh.GetRoutes() {
			here := fmt.Sprintf("%s.virtual_hosts[%d].routes[%d].route", at, i, j)
			action := r.GetRoute()
			if action == nil {
				continue
			}
			names := []string{}
			if name := action.GetCluster(); name != "" {
				names = append(names, name)
			}
			for _, wc := range action.GetWeightedClusters().GetClusters() {
				names = append(names, wc.GetName())
			}
			for _, name := range names {
				if !clusters[name] {
					w.fail(here, "unknown cluster %q (defined: %s)", name, strings.Join(sortedKeys(clusters), ", "))
				}
			}
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
