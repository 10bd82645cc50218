// helm-render: renders a Helm chart without the helm binary, emulating the
// subset of Helm 3's template engine that helm/funnelstream uses. It exists
// because helm cannot be installed where this project is built and tested;
// see deploy/helm-check/README.md for exactly what is emulated and what is
// not.
//
// Build offline with Debian's packages only (GOPATH mode, no module proxy):
//
//	apt-get install golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o helm-render deploy/helm-check/main.go
//
// Usage:
//
//	helm-render -chart DIR -out DIR [-f values.yaml]... [-name RELEASE]
//	            [-namespace NS] [-kube-version v1.31.0] [-api-versions a/v1,b/v1]
//
// Writes OUT/manifests/<template path> for every template whose output is
// not blank, OUT/NOTES.txt, and OUT/values.json (the merged values, for the
// JSON Schema check, which is done in Python: Go's standard library has no
// JSON Schema validator; written before the templates run, so that values a
// template refuses can still be checked against the schema).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver" // v3, Debian golang-github-masterminds-semver-dev
	"github.com/Masterminds/sprig"  // v3, Debian golang-github-masterminds-sprig-dev
	yaml "gopkg.in/yaml.v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// ChartMeta mirrors the fields of Helm's chart.Metadata that templates read
// as .Chart.*.
type ChartMeta struct {
	APIVersion   string            `yaml:"apiVersion" json:"apiVersion"`
	Name         string            `yaml:"name" json:"name"`
	Version      string            `yaml:"version" json:"version"`
	KubeVersion  string            `yaml:"kubeVersion" json:"kubeVersion,omitempty"`
	Description  string            `yaml:"description" json:"description,omitempty"`
	Type         string            `yaml:"type" json:"type,omitempty"`
	Keywords     []string          `yaml:"keywords" json:"keywords,omitempty"`
	Home         string            `yaml:"home" json:"home,omitempty"`
	Sources      []string          `yaml:"sources" json:"sources,omitempty"`
	Icon         string            `yaml:"icon" json:"icon,omitempty"`
	AppVersion   string            `yaml:"appVersion" json:"appVersion,omitempty"`
	Deprecated   bool              `yaml:"deprecated" json:"deprecated,omitempty"`
	Annotations  map[string]string `yaml:"annotations" json:"annotations,omitempty"`
	Maintainers  []Maintainer      `yaml:"maintainers" json:"maintainers,omitempty"`
	Dependencies []interface{}     `yaml:"dependencies" json:"dependencies,omitempty"`
}

type Maintainer struct {
	Name  string `yaml:"name" json:"name"`
	Email string `yaml:"email" json:"email,omitempty"`
	URL   string `yaml:"url" json:"url,omitempty"`
}

// KubeVersion and Capabilities mirror chartutil.Capabilities.
type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

type VersionSet []string

// Has is what `.Capabilities.APIVersions.Has "monitoring.coreos.com/v1"` calls.
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// Files mirrors the read-only part of Helm's .Files (non-template files of
// the chart).
type Files map[string][]byte

func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "helm-render: "+format+"\n", a...)
	os.Exit(1)
}

// ---- values: read the way Helm does (sigs.k8s.io/yaml: YAML -> JSON ->
// encoding/json), so every number is a float64 in templates, exactly as in
// Helm (which is why templates must pipe big integers through `int64`).

// jsonify turns yaml.v2's map[interface{}]interface{} into JSON-able data.
func jsonify(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case int, int64, float64, bool:
				ks = fmt.Sprint(kk)
			default:
				return nil, fmt.Errorf("unsupported map key type %T", k)
			}
			j, err := jsonify(val)
			if err != nil {
				return nil, err
			}
			m[ks] = j
		}
		return m, nil
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			j, err := jsonify(val)
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	default:
		return v, nil
	}
}

func yamlToJSONValue(data []byte, target interface{}) error {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return err
	}
	j, err := jsonify(raw)
	if err != nil {
		return err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, target)
}

func readValues(file string) map[string]interface{} {
	data, err := os.ReadFile(file)
	if err != nil {
		fail("%v", err)
	}
	m := map[string]interface{}{}
	if len(bytes.TrimSpace(data)) == 0 {
		return m
	}
	if err := yamlToJSONValue(data, &m); err != nil {
		fail("%s: %v", file, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m
}

// mergeMaps is Helm's merge of several -f files (later wins, maps merge).
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if om, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(om, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce is Helm's chartutil.CoalesceValues for one chart: user values
// win; maps merge recursively; a user `null` deletes the chart default.
func coalesce(user, defaults map[string]interface{}, path string) map[string]interface{} {
	out := make(map[string]interface{})
	for k, v := range user {
		out[k] = v
	}
	for k, dv := range defaults {
		uv, present := out[k]
		if !present {
			out[k] = dv
			continue
		}
		if uv == nil {
			delete(out, k)
			continue
		}
		um, uok := uv.(map[string]interface{})
		dm, dok := dv.(map[string]interface{})
		switch {
		case uok && dok:
			out[k] = coalesce(um, dm, path+k+".")
		case dok && !uok:
			fmt.Fprintf(os.Stderr, "helm-render: warning: cannot overwrite table with non table for %s%s\n", path, k)
		}
	}
	// A null the user set for a key without default is dropped too.
	for k, v := range out {
		if v == nil {
			delete(out, k)
		}
	}
	return out
}

// ---- Helm's extra template functions (pkg/engine/funcs.go).

// toYAML is Helm's: sigs.k8s.io/yaml.Marshal (JSON first, then yaml.v2,
// keys sorted), without the trailing newline.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yamlToJSONValue([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	a := []interface{}{}
	if err := yamlToJSONValue([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

type renderer struct {
	tmpl *template.Template
}

func (r *renderer) funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these two for security.
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["toToml"] = func(interface{}) (string, error) {
		return "", errors.New("toToml is not emulated by helm-render")
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	f["lookup"] = func(...interface{}) (map[string]interface{}, error) {
		return nil, errors.New("lookup is not allowed in this chart (no cluster access when rendering)")
	}
	included := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if included[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		included[name]++
		defer func() { included[name]-- }()
		var buf strings.Builder
		err := r.tmpl.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, vals interface{}) (string, error) {
		t, err := r.tmpl.Clone()
		if err != nil {
			return "", err
		}
		t.Option("missingkey=zero")
		nt, err := t.New("tpl-inline").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf strings.Builder
		if err := nt.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}

var sourceRE = regexp.MustCompile(`(?m)^\s*$`)

func main() {
	var valueFiles multiFlag
	chartDir := flag.String("chart", "", "chart directory")
	outDir := flag.String("out", "", "output directory")
	release := flag.String("name", "funnelstream", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "release namespace (.Release.Namespace)")
	kubeVersion := flag.String("kube-version", "v1.31.0", ".Capabilities.KubeVersion")
	apiVersions := flag.String("api-versions", "", "extra .Capabilities.APIVersions, comma separated")
	flag.Var(&valueFiles, "f", "values file (repeatable; later files win)")
	flag.Parse()
	if *chartDir == "" || *outDir == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	// Chart.yaml
	var meta ChartMeta
	chartYAML, err := os.ReadFile(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		fail("%v", err)
	}
	if err := yaml.UnmarshalStrict(chartYAML, &meta); err != nil {
		fail("Chart.yaml: %v", err)
	}
	if meta.APIVersion != "v2" {
		fail("Chart.yaml: apiVersion must be v2, not %q", meta.APIVersion)
	}
	if meta.Name == "" || meta.Version == "" {
		fail("Chart.yaml: name and version are required")
	}
	if _, err := semver.StrictNewVersion(meta.Version); err != nil {
		fail("Chart.yaml: version %q is not SemVer 2: %v", meta.Version, err)
	}
	if meta.Type != "" && meta.Type != "application" {
		fail("Chart.yaml: only application charts are emulated")
	}
	if len(meta.Dependencies) > 0 {
		fail("Chart.yaml: dependencies (subcharts) are not emulated")
	}
	kv, err := semver.NewVersion(*kubeVersion)
	if err != nil {
		fail("-kube-version: %v", err)
	}
	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			fail("Chart.yaml: kubeVersion: %v", err)
		}
		if !c.Check(kv) {
			fail("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", meta.KubeVersion, *kubeVersion)
		}
	}

	// Values: chart defaults coalesced with the user's files.
	defaults := readValues(filepath.Join(*chartDir, "values.yaml"))
	user := map[string]interface{}{}
	for _, vf := range valueFiles {
		user = mergeMaps(user, readValues(vf))
	}
	values := coalesce(user, defaults, "")

	// Templates and files.
	tplBase := path.Join(meta.Name, "templates")
	type tplFile struct{ name, rel string }
	var tpls []tplFile
	files := Files{}
	root := filepath.Clean(*chartDir)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return nil
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			tpls = append(tpls, tplFile{path.Join(meta.Name, rel), rel})
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" || rel == "Chart.lock":
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[rel] = b
		}
		return nil
	})
	if err != nil {
		fail("%v", err)
	}
	if _, err := os.Stat(filepath.Join(root, ".helmignore")); err == nil {
		// .helmignore only filters .Files, which this chart reads by exact
		// name: nothing to emulate beyond not exposing the file itself.
		delete(files, ".helmignore")
	}
	sort.Slice(tpls, func(i, j int) bool { return tpls[i].name < tpls[j].name })

	r := &renderer{}
	r.tmpl = template.New("gotpl").Option("missingkey=zero")
	r.tmpl.Funcs(r.funcMap())
	for _, t := range tpls {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(t.rel)))
		if err != nil {
			fail("%v", err)
		}
		if _, err := r.tmpl.New(t.name).Parse(string(b)); err != nil {
			fail("parse error in %s: %v", t.name, err)
		}
	}

	apis := VersionSet{"v1", "apps/v1", "policy/v1", "batch/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "autoscaling/v2"}
	for _, a := range strings.Split(*apiVersions, ",") {
		if a = strings.TrimSpace(a); a != "" {
			apis = append(apis, a)
		}
	}
	caps := Capabilities{
		KubeVersion: KubeVersion{
			Version:    "v" + kv.String(),
			Major:      fmt.Sprint(kv.Major()),
			Minor:      fmt.Sprint(kv.Minor()),
			GitVersion: "v" + kv.String(),
		},
		APIVersions: apis,
		HelmVersion: map[string]string{"Version": "v3-emulated-by-helm-render"},
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name":      *release,
			"Namespace": *namespace,
			"Service":   "Helm",
			"IsInstall": true,
			"IsUpgrade": false,
			"Revision":  1,
		},
		"Chart":        meta,
		"Capabilities": caps,
		"Files":        files,
	}

	manifestDir := filepath.Join(*outDir, "manifests")
	if err := os.MkdirAll(manifestDir, 0o755); err != nil {
		fail("%v", err)
	}
	// The merged values first: a template that fails (`fail`, `required`)
	// still leaves them for the schema check, which Helm runs before
	// rendering.
	vj, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(filepath.Join(*outDir, "values.json"), append(vj, '\n'), 0o644); err != nil {
		fail("%v", err)
	}
	rendered := 0
	for _, t := range tpls {
		base := path.Base(t.rel)
		if strings.HasPrefix(base, "_") {
			continue // partials: definitions only
		}
		vals := make(map[string]interface{}, len(top)+1)
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": t.name, "BasePath": tplBase}
		var buf strings.Builder
		if err := r.tmpl.ExecuteTemplate(&buf, t.name, vals); err != nil {
			fail("%v", err)
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			if err := os.WriteFile(filepath.Join(*outDir, "NOTES.txt"), []byte(out), 0o644); err != nil {
				fail("%v", err)
			}
			continue
		}
		if strings.TrimSpace(out) == "" {
			continue // Helm drops empty manifests
		}
		// Helm refuses output that is not YAML, and every document needs a
		// kind and an apiVersion.
		for i, doc := range strings.Split(out, "\n---") {
			if sourceRE.ReplaceAllString(doc, "") == "" {
				continue
			}
			var obj map[string]interface{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				fail("YAML parse error on %s (document %d): %v", t.name, i, err)
			}
			if obj == nil {
				continue
			}
			if obj["apiVersion"] == nil || obj["kind"] == nil {
				fail("%s (document %d): apiVersion and kind are required", t.name, i)
			}
		}
		dst := filepath.Join(manifestDir, filepath.FromSlash(strings.TrimPrefix(t.rel, "templates/")))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			fail("%v", err)
		}
		content := "---\n# Source: " + t.name + "\n" + strings.TrimLeft(out, "\n")
		if !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			fail("%v", err)
		}
		rendered++
	}
	fmt.Printf("helm-render: %s %s: %d manifests in %s\n", meta.Name, meta.Version, rendered, manifestDir)
}
