package config_test

// The deployment kit (Dockerfile, .dockerignore, testdata/examples) is
// checked here against what Baton really reads: the example baton.yaml is
// loaded with Load and its policies compiled, and the Kubernetes objects,
// the compose file and the Dockerfile must agree with it (the data
// directory, the ports, the ${VARS}, the config directory's files) and
// with the admin API's health and readiness paths. Nothing here needs
// Docker or a cluster: a kit that drifts from the config fails here
// instead of at someone's first deploy.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/cli"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/sandbox"
)

const (
	repoRoot    = "../.."
	examplesDir = repoRoot + "/testdata/examples"
	// exampleConfigDir is the config directory both examples mount:
	// baton.yaml and the policy files it names, beside it.
	exampleConfigDir = examplesDir + "/config"

	// The admin API's health and readiness paths (the probes' targets).
	healthyPath = "/-/healthy"
	readyPath   = "/-/ready"
)

// example is the example config, loaded, with what it took from the
// environment.
type example struct {
	cfg *config.Config
	// vars are the ${VARS} the file refers to, sorted.
	vars []string
	// raw is the file's contents, which the ConfigMap must hold as is.
	raw []byte
}

// loadExample loads the example baton.yaml as baton serve does, with a
// fake environment that has every variable, and records which variables
// the file refers to.
func loadExample(t *testing.T) example {
	t.Helper()
	file := exampleConfigDir + "/baton.yaml"
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	cfg, err := config.Load(file, func(name string) (string, bool) {
		seen[name] = true
		return "example-value-of-" + name, true
	})
	if err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	vars := make([]string, 0, len(seen))
	for v := range seen {
		vars = append(vars, v)
	}
	sort.Strings(vars)
	return example{cfg: cfg, vars: vars, raw: raw}
}

func TestExampleConfigLoads(t *testing.T) {
	ex := loadExample(t)
	if len(ex.vars) == 0 {
		t.Fatal("the example config takes nothing from the environment; its secrets belong there, not in the file")
	}
	// Every variable is needed: without any one of them Baton does not start.
	for _, missing := range ex.vars {
		_, err := config.Load(exampleConfigDir+"/baton.yaml", func(name string) (string, bool) {
			if name == missing {
				return "", false
			}
			return "x", true
		})
		if err == nil {
			t.Errorf("the example config loads without %s; it should not refer to it", missing)
		}
	}
	cfg := ex.cfg
	if !filepath.IsAbs(cfg.DataDir) {
		t.Errorf("data_dir %q is relative; a container's volume is mounted at an absolute path", cfg.DataDir)
	}
	// The kubelet's probes and Prometheus come from outside the pod, so
	// the admin listener is on every interface, and so has a token.
	if config.IsLoopback(cfg.Admin.Listen) {
		t.Errorf("admin.listen %q is loopback: the probes of the Kubernetes example cannot reach it", cfg.Admin.Listen)
	}
	if cfg.Admin.Token.IsZero() {
		t.Error("admin.token is empty")
	}
	if _, err := policies.LoadFiles(cfg.Policies, cfg.Apps); err != nil {
		t.Errorf("the example policies do not compile: %v", err)
	}
	for _, p := range cfg.Policies {
		if rel, err := filepath.Rel(absPath(t, exampleConfigDir), p); err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("policy file %s is outside the config directory, which is all the examples mount", p)
		}
	}
}

// TestExampleServesItsProbes runs the example config for real: a Baton
// (proxy/app) with the example's baton.yaml and policies, its data in a
// temp dir instead of the volume, its listeners on loopback ports, against
// the sandbox platform and a fake bot. The paths the probes ask answer
// without a token, the rest of the admin API wants the one from the
// environment (as the CLI finds it in BATON_ADMIN_TOKEN), baton
// healthcheck passes, a backup streams, and Meta's verification gets the
// verify token's answer.
func TestExampleServesItsProbes(t *testing.T) {
	ex := loadExample(t)
	const secret = "example-app-secret"
	apps := []sandbox.AppSpec{{ID: ex.cfg.App.ID, Secret: secret, CanTake: true}}
	for _, id := range ex.cfg.Apps {
		apps = append(apps, sandbox.AppSpec{ID: id, Secret: "secret-of-" + id, CanTake: true})
	}
	var pages []string
	for _, pg := range ex.cfg.Pages {
		pages = append(pages, pg.ID)
	}
	p, err := sandbox.Start(sandbox.Options{Pages: pages, DefaultApp: ex.cfg.App.ID, Apps: apps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	bot, err := sandbox.StartReceiver(secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bot.Close() })

	env := map[string]string{"BATON_APP_SECRET": secret, "PAGE_TOKEN": p.Token(pages[0], ex.cfg.App.ID)}
	cfg, err := config.Load(exampleConfigDir+"/baton.yaml", func(name string) (string, bool) {
		if v, ok := env[name]; ok {
			return v, true
		}
		return "example-value-of-" + name, true
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Graph.BaseURL, cfg.Graph.Version = p.URL(), p.Version()
	cfg.Bot.URL = bot.URL()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(app.Options{Config: cfg, Listener: ln, AdminListener: adminLn, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)

	get := func(u, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	// The kubelet asks without a token.
	for _, path := range []string{healthyPath, readyPath} {
		if code, body := get(a.AdminURL()+path, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s; want 200", path, code, body)
		}
	}
	token := cfg.Admin.Token.Reveal()
	if code, _ := get(a.AdminURL()+"/api/v1/build", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/build without a token: %d; want 401", code)
	}
	if code, body := get(a.AdminURL()+"/api/v1/build", token); code != http.StatusOK {
		t.Errorf("GET /api/v1/build with the token: %d %s", code, body)
	}

	// What the image's HEALTHCHECK and the README's backup run.
	c, err := cli.NewClient(a.AdminURL(), token)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, ready := range []bool{false, true} {
		if err := cli.Healthcheck(ctx, &out, c, ready); err != nil {
			t.Errorf("baton healthcheck (ready %v): %v", ready, err)
		}
	}
	var backup bytes.Buffer
	if n, err := c.Backup(ctx, &backup); err != nil || n == 0 {
		t.Errorf("baton backup: %d bytes, %v", n, err)
	}

	// Meta's verification of the webhook, with the verify token from the
	// environment.
	q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {cfg.App.VerifyToken.Reveal()}, "hub.challenge": {"1158201444"}}
	if code, body := get(a.WebhookURL()+"?"+q.Encode(), ""); code != http.StatusOK || body != "1158201444" {
		t.Errorf("webhook verification: %d %q; want 200 and the challenge", code, body)
	}
}

// TestExamplesParse reads every YAML file of the examples, every document
// of each.
func TestExamplesParse(t *testing.T) {
	files := 0
	err := filepath.WalkDir(examplesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return err
		}
		files++
		if docs := yamlDocs(t, p); len(docs) == 0 {
			t.Errorf("%s: no YAML document", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 6 {
		t.Fatalf("found %d YAML files under %s; is the walk broken?", files, examplesDir)
	}
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, file string) []*yaml.Node {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []*yaml.Node
	dec := yaml.NewDecoder(f)
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, len(docs)+1, err)
		}
		docs = append(docs, &n)
	}
}

// The Kubernetes objects, as far as the checks below read them.

type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
}

type statefulSet struct {
	Spec struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []object `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostAliases []struct {
		IP        string   `yaml:"ip"`
		Hostnames []string `yaml:"hostnames"`
	} `yaml:"hostAliases"`
	SecurityContext struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
		FSGroup      *int  `yaml:"fsGroup"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []volume    `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe   *probe        `yaml:"startupProbe"`
	LivenessProbe  *probe        `yaml:"livenessProbe"`
	ReadinessProbe *probe        `yaml:"readinessProbe"`
	VolumeMounts   []volumeMount `yaml:"volumeMounts"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type probe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a port name or number
	} `yaml:"httpGet"`
}

type configMapProjection struct {
	Name  string `yaml:"name"`
	Items []struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
	} `yaml:"items"`
}

type volume struct {
	Name                  string `yaml:"name"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
	ConfigMap *configMapProjection `yaml:"configMap"`
	Projected *struct {
		Sources []struct {
			ConfigMap *configMapProjection `yaml:"configMap"`
		} `yaml:"sources"`
	} `yaml:"projected"`
}

type service struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string    `yaml:"name"`
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// kube is the Kubernetes example: its objects by kind and name.
type kube struct {
	statefulSets map[string]statefulSet
	services     map[string]service
	configMaps   map[string]map[string]string // name -> data
	secrets      map[string]map[string]string // name -> data and stringData
}

func loadKube(t *testing.T) kube {
	t.Helper()
	k := kube{
		statefulSets: map[string]statefulSet{},
		services:     map[string]service{},
		configMaps:   map[string]map[string]string{},
		secrets:      map[string]map[string]string{},
	}
	files, err := filepath.Glob(examplesDir + "/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Kubernetes objects in %s/kubernetes (%v)", examplesDir, err)
	}
	for _, file := range files {
		for i, doc := range yamlDocs(t, file) {
			var o object
			decode(t, doc, &o, file, i)
			if o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: document %d has no kind or name", file, i+1)
			}
			switch o.Kind {
			case "StatefulSet":
				var s statefulSet
				decode(t, doc, &s, file, i)
				k.statefulSets[o.Metadata.Name] = s
			case "Service":
				var s service
				decode(t, doc, &s, file, i)
				k.services[o.Metadata.Name] = s
			case "ConfigMap":
				var c struct {
					Data map[string]string `yaml:"data"`
				}
				decode(t, doc, &c, file, i)
				k.configMaps[o.Metadata.Name] = c.Data
			case "Secret":
				var s struct {
					Data       map[string]string `yaml:"data"`
					StringData map[string]string `yaml:"stringData"`
				}
				decode(t, doc, &s, file, i)
				all := map[string]string{}
				for key, v := range s.Data {
					all[key] = v
				}
				for key, v := range s.StringData {
					all[key] = v
				}
				k.secrets[o.Metadata.Name] = all
			}
		}
	}
	return k
}

func decode(t *testing.T, doc *yaml.Node, v any, file string, i int) {
	t.Helper()
	if err := doc.Decode(v); err != nil {
		t.Fatalf("%s: document %d: %v", file, i+1, err)
	}
}

// baton returns the StatefulSet and its Baton container: the one that
// runs "serve".
func (k kube) baton(t *testing.T) (statefulSet, container) {
	t.Helper()
	if len(k.statefulSets) != 1 {
		t.Fatalf("%d StatefulSets; want exactly one, Baton's", len(k.statefulSets))
	}
	for _, s := range k.statefulSets {
		for _, c := range s.Spec.Template.Spec.Containers {
			if len(c.Args) > 0 && c.Args[0] == "serve" {
				return s, c
			}
		}
		t.Fatal(`no container of the StatefulSet runs "serve"`)
	}
	return statefulSet{}, container{}
}

func TestKubernetesOneBatonOnItsOwnVolume(t *testing.T) {
	ex, k := loadExample(t), loadKube(t)
	s, c := k.baton(t)
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
		t.Errorf("replicas is not 1, written out: a data directory serves one Baton")
	}
	if !subset(s.Spec.Selector.MatchLabels, s.Spec.Template.Metadata.Labels) || len(s.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("selector %v does not select the pod's labels %v", s.Spec.Selector.MatchLabels, s.Spec.Template.Metadata.Labels)
	}
	if _, ok := k.services[s.Spec.ServiceName]; !ok {
		t.Errorf("serviceName %q names no Service of the example", s.Spec.ServiceName)
	}
	if len(s.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volumeClaimTemplates; want one, for the data directory", len(s.Spec.VolumeClaimTemplates))
	}
	claim := s.Spec.VolumeClaimTemplates[0].Metadata.Name
	held := dataMounts(c, ex.cfg.DataDir)
	if len(held) == 0 {
		t.Errorf("no volume is mounted at data_dir %s or above it", ex.cfg.DataDir)
	}
	for _, m := range held {
		if m.Name != claim || m.ReadOnly || m.SubPath != "" {
			t.Errorf("data_dir %s is on %q (read-only %v, subPath %q); want the claim %q, writable, whole",
				ex.cfg.DataDir, m.Name, m.ReadOnly, m.SubPath, claim)
		}
	}

	// The pod runs as the image's user, and the volume is made its own.
	uid, gid := dockerUser(t, parseDockerfile(t))
	sc := s.Spec.Template.Spec.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("runAsNonRoot is not set")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != uid {
		t.Errorf("runAsUser %v; want the image's user %d", sc.RunAsUser, uid)
	}
	if sc.FSGroup == nil || *sc.FSGroup != gid {
		t.Errorf("fsGroup %v; want the image's group %d, so the data volume is writable", sc.FSGroup, gid)
	}
}

func TestKubernetesConfigDirectory(t *testing.T) {
	ex, k := loadExample(t), loadKube(t)
	s, c := k.baton(t)
	cfgPath := flagValue(c.Args, "--config")
	if cfgPath == "" {
		t.Fatalf("Baton's args %q have no --config", c.Args)
	}
	if want := dockerConfigPath(t, parseDockerfile(t)); cfgPath != want {
		t.Errorf("--config %s; the image's default is %s: keep one place for the config", cfgPath, want)
	}
	dir := path.Dir(cfgPath)
	var vol string
	for _, m := range c.VolumeMounts {
		if m.MountPath == dir {
			vol = m.Name
			if m.SubPath != "" {
				t.Errorf("the config directory is a subPath mount; ConfigMap updates do not reach those")
			}
		}
	}
	if vol == "" {
		t.Fatalf("nothing is mounted at the config directory %s", dir)
	}
	files := map[string]string{} // path in the directory -> content
	for _, v := range s.Spec.Template.Spec.Volumes {
		if v.Name != vol {
			continue
		}
		var sources []*configMapProjection
		if v.ConfigMap != nil {
			sources = append(sources, v.ConfigMap)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					sources = append(sources, src.ConfigMap)
				}
			}
		}
		for _, src := range sources {
			data, ok := k.configMaps[src.Name]
			if !ok {
				t.Errorf("volume %s projects ConfigMap %q, which the example does not define", vol, src.Name)
				continue
			}
			if len(src.Items) == 0 {
				for key, content := range data {
					files[key] = content
				}
			}
			for _, it := range src.Items {
				content, ok := data[it.Key]
				if !ok {
					t.Errorf("ConfigMap %s has no key %q", src.Name, it.Key)
				}
				files[it.Path] = content
			}
		}
	}

	// baton.yaml itself, then every policy file it names, at the path it
	// names it by, with the contents of the example files.
	want := map[string][]byte{path.Base(cfgPath): ex.raw}
	base := absPath(t, exampleConfigDir)
	for _, p := range ex.cfg.Policies {
		rel, err := filepath.Rel(base, p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		want[filepath.ToSlash(rel)] = data
	}
	for name, data := range want {
		got, ok := files[name]
		switch {
		case !ok:
			t.Errorf("the config directory %s has no %s", dir, name)
		case got != string(data):
			t.Errorf("%s in the ConfigMap differs from testdata/examples/config/%s; copy it over", name, name)
		}
	}
}

func TestKubernetesSecretsAndEnvironment(t *testing.T) {
	ex, k := loadExample(t), loadKube(t)
	s, c := k.baton(t)
	provided := map[string]bool{}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef == nil {
			continue
		}
		data, ok := k.secrets[ef.SecretRef.Name]
		if !ok {
			t.Fatalf("envFrom names Secret %q, which the example does not define", ef.SecretRef.Name)
		}
		keys := slices.Sorted(maps.Keys(data))
		if !slices.Equal(keys, ex.vars) {
			t.Errorf("Secret %s has keys %v; the config refers to %v", ef.SecretRef.Name, keys, ex.vars)
		}
		for _, key := range keys {
			provided[key] = true
		}
	}
	for _, e := range c.Env {
		provided[e.Name] = true
	}
	for _, v := range ex.vars {
		if !provided[v] {
			t.Errorf("the config refers to ${%s}, which Baton's container does not get", v)
		}
	}
	// Every Secret a container takes a key from has that key.
	for _, ctr := range s.Spec.Template.Spec.Containers {
		for _, e := range ctr.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			if _, ok := k.secrets[ref.Name][ref.Key]; !ok {
				t.Errorf("container %s: %s comes from Secret %s key %s, which the example does not define", ctr.Name, e.Name, ref.Name, ref.Key)
			}
		}
	}
}

func TestKubernetesProbesAndPorts(t *testing.T) {
	ex, k := loadExample(t), loadKube(t)
	s, c := k.baton(t)
	adminPort := port(t, ex.cfg.Admin.Listen)
	for _, p := range []struct {
		name string
		pr   *probe
		want []string
	}{
		{"livenessProbe", c.LivenessProbe, []string{healthyPath}},
		{"readinessProbe", c.ReadinessProbe, []string{readyPath}},
		{"startupProbe", c.StartupProbe, []string{healthyPath, readyPath}},
	} {
		if p.pr == nil {
			if p.name != "startupProbe" {
				t.Errorf("Baton's container has no %s", p.name)
			}
			continue
		}
		if p.pr.HTTPGet == nil {
			t.Errorf("%s is not an httpGet", p.name)
			continue
		}
		if !slices.Contains(p.want, p.pr.HTTPGet.Path) {
			t.Errorf("%s asks %s; want %s of the admin listener", p.name, p.pr.HTTPGet.Path, strings.Join(p.want, " or "))
		}
		if got := containerPort(t, c, &p.pr.HTTPGet.Port); got != adminPort {
			t.Errorf("%s asks port %d; admin.listen is %s", p.name, got, ex.cfg.Admin.Listen)
		}
	}

	// The webhook Service sends to the webhook listener of Baton's pod.
	webhookPort := port(t, ex.cfg.Listen)
	svc, ok := k.services[s.Spec.ServiceName]
	if !ok {
		t.Fatalf("no Service %q", s.Spec.ServiceName)
	}
	if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, s.Spec.Template.Metadata.Labels) {
		t.Errorf("Service %s selects %v, not Baton's pod (%v)", s.Spec.ServiceName, svc.Spec.Selector, s.Spec.Template.Metadata.Labels)
	}
	found := false
	for _, p := range svc.Spec.Ports {
		if containerPort(t, c, &p.TargetPort) == webhookPort {
			found = true
		}
	}
	if !found {
		t.Errorf("Service %s has no port to the webhook listener (%s)", s.Spec.ServiceName, ex.cfg.Listen)
	}

	// bot.url reaches the bot's container on the pod's loopback.
	u, err := url.Parse(ex.cfg.Bot.URL)
	if err != nil {
		t.Fatal(err)
	}
	loopback := u.Hostname() == "localhost" || net.ParseIP(u.Hostname()).IsLoopback()
	for _, h := range s.Spec.Template.Spec.HostAliases {
		if slices.Contains(h.Hostnames, u.Hostname()) && net.ParseIP(h.IP).IsLoopback() {
			loopback = true
		}
	}
	if !loopback {
		t.Errorf("bot.url's host %q is not the pod's loopback (nor a hostAliases name of it)", u.Hostname())
	}
	botPort, _ := strconv.Atoi(u.Port())
	served := false
	for _, ctr := range s.Spec.Template.Spec.Containers {
		for _, p := range ctr.Ports {
			served = served || (ctr.Name != c.Name && p.ContainerPort == botPort)
		}
	}
	if !served {
		t.Errorf("no other container of the pod declares bot.url's port %d", botPort)
	}
}

// TestKubernetesRestore checks the restore recipe: a one-off pod that
// runs baton restore into data_dir on a new claim with the name the
// StatefulSet's pod uses, so Baton starts on what was restored.
func TestKubernetesRestore(t *testing.T) {
	ex, k := loadExample(t), loadKube(t)
	s, _ := k.baton(t)
	file := examplesDir + "/kubernetes/restore/restore.yaml"
	var claims []string
	var pod struct {
		Spec podSpec `yaml:"spec"`
	}
	for i, doc := range yamlDocs(t, file) {
		var o object
		decode(t, doc, &o, file, i)
		switch o.Kind {
		case "PersistentVolumeClaim":
			claims = append(claims, o.Metadata.Name)
		case "Pod":
			decode(t, doc, &pod, file, i)
		}
	}
	var stsName string // the one (k.baton checked)
	for name := range k.statefulSets {
		stsName = name
	}
	if len(s.Spec.VolumeClaimTemplates) == 0 {
		t.Fatal("the StatefulSet has no volume claim template to restore into")
	}
	want := s.Spec.VolumeClaimTemplates[0].Metadata.Name + "-" + stsName + "-0"
	if !slices.Contains(claims, want) {
		t.Errorf("the recipe creates claims %v; the StatefulSet's pod uses %s", claims, want)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("the restore pod has %d containers; want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "restore" || flagValue(c.Args, "--data-dir") != ex.cfg.DataDir {
		t.Errorf("the restore pod runs %q; want restore --data-dir %s", c.Args, ex.cfg.DataDir)
	}
	held := dataMounts(c, ex.cfg.DataDir)
	if len(held) == 0 {
		t.Fatalf("the restore pod mounts nothing at data_dir %s or above it", ex.cfg.DataDir)
	}
	for _, m := range held {
		for _, v := range pod.Spec.Volumes {
			if v.Name == m.Name && (v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != want) {
				t.Errorf("the restore pod's data volume is not the claim %s", want)
			}
		}
	}
	uid, gid := dockerUser(t, parseDockerfile(t))
	if sc := pod.Spec.SecurityContext; sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.FSGroup == nil || *sc.FSGroup != gid {
		t.Errorf("the restore pod does not run as the image's user %d with fsGroup %d, which Baton must be able to write as", uid, gid)
	}
}

// containerPort resolves a probe's or Service's port (a name or a number)
// against the container's ports.
func containerPort(t *testing.T, c container, n *yaml.Node) int {
	t.Helper()
	if n.ShortTag() == "!!int" {
		p, err := strconv.Atoi(n.Value)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort
		}
	}
	t.Errorf("container %s has no port named %q", c.Name, n.Value)
	return 0
}

// The compose example.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Build *struct {
		Context string            `yaml:"context"`
		Args    map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Deploy      *struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
}

func TestCompose(t *testing.T) {
	ex := loadExample(t)
	dir := examplesDir + "/compose"
	docs := yamlDocs(t, dir+"/compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml has %d documents; want 1", len(docs))
	}
	var cf composeFile
	decode(t, docs[0], &cf, "compose.yaml", 0)
	b, ok := cf.Services["baton"]
	if !ok {
		t.Fatal(`compose.yaml has no service "baton"`)
	}
	if b.Deploy != nil && b.Deploy.Replicas != nil && *b.Deploy.Replicas != 1 {
		t.Errorf("baton runs %d replicas; a data volume serves one", *b.Deploy.Replicas)
	}
	if b.Build == nil {
		t.Fatal("the baton service does not build the image")
	}
	if _, err := os.Stat(filepath.Join(dir, b.Build.Context, "Dockerfile")); err != nil {
		t.Errorf("build context %s has no Dockerfile: %v", b.Build.Context, err)
	}

	// The config directory is mounted where --config looks, read-only,
	// and it is the example's.
	df := parseDockerfile(t)
	cfgPath := dockerConfigPath(t, df)
	if len(b.Command) > 0 {
		cfgPath = flagValue(b.Command, "--config")
	}
	mounts := map[string]string{} // target -> source
	for _, v := range b.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("volume %q: want SOURCE:TARGET", v)
			continue
		}
		mounts[parts[1]] = parts[0]
		if parts[1] == path.Dir(cfgPath) && (len(parts) < 3 || parts[2] != "ro") {
			t.Errorf("the config directory is mounted writable (%q); Baton only reads it", v)
		}
	}
	src, ok := mounts[path.Dir(cfgPath)]
	if !ok {
		t.Errorf("nothing is mounted at the config directory %s", path.Dir(cfgPath))
	} else if absPath(t, filepath.Join(dir, src)) != absPath(t, exampleConfigDir) {
		t.Errorf("the config directory comes from %s, not from testdata/examples/config", src)
	}

	// The data directory is on a named volume, which starts as the
	// image's directory, owned by its non-root user.
	at, ok := mountOf(ex.cfg.DataDir, slices.Collect(maps.Keys(mounts)))
	vol := mounts[at]
	switch {
	case !ok:
		t.Errorf("no volume is mounted at data_dir %s or above it", ex.cfg.DataDir)
	case at != dockerVolume(t, df):
		t.Errorf("data_dir's volume is mounted at %s; the image's VOLUME, owned by its user, is %s", at, dockerVolume(t, df))
	case strings.HasPrefix(vol, ".") || strings.HasPrefix(vol, "/") || strings.HasPrefix(vol, "~"):
		t.Errorf("data_dir is the bind mount %s; want a named volume", vol)
	default:
		if _, declared := cf.Volumes[vol]; !declared {
			t.Errorf("volume %s is not declared under volumes:", vol)
		}
	}

	// Every ${VAR} of the config comes from the environment, which
	// compose fills from .env; .env.example lists them.
	envExample := envFileKeys(t, dir+"/.env.example")
	for _, v := range ex.vars {
		val, ok := b.Environment[v]
		if !ok {
			t.Errorf("the baton service does not pass %s, which the config refers to", v)
			continue
		}
		if !strings.HasPrefix(val, "${"+v+":?") {
			t.Errorf("%s is %q; want ${%s:?...}, so compose refuses to start without it", v, val, v)
		}
		if !envExample[v] {
			t.Errorf(".env.example does not list %s", v)
		}
	}

	// The webhook listener is published, and the admin listener, which
	// hands out the database, at most on the host's loopback.
	webhookPort, adminPort := strconv.Itoa(port(t, ex.cfg.Listen)), strconv.Itoa(port(t, ex.cfg.Admin.Listen))
	published := false
	for _, p := range b.Ports {
		parts := strings.Split(p, ":")
		target := parts[len(parts)-1]
		published = published || target == webhookPort
		if target == adminPort && (len(parts) != 3 || !net.ParseIP(parts[0]).IsLoopback()) {
			t.Errorf("port %q publishes the admin listener beyond the host's loopback", p)
		}
	}
	if !published {
		t.Errorf("the webhook port %s is not published", webhookPort)
	}

	// bot.url's host is the bot's service.
	u, err := url.Parse(ex.cfg.Bot.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cf.Services[u.Hostname()]; !ok {
		t.Errorf("bot.url's host %q is no service of compose.yaml", u.Hostname())
	}
}

func envFileKeys(t *testing.T, file string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=VALUE", file, line)
		}
		keys[key] = true
	}
	return keys
}

// The Dockerfile.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

func parseDockerfile(t *testing.T) []instruction {
	t.Helper()
	data, err := os.ReadFile(repoRoot + "/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, cont := strings.CutSuffix(trimmed, `\`); cont {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	return out
}

// finalStage returns the instructions of the Dockerfile's last stage.
func finalStage(df []instruction) []instruction {
	last := 0
	for i, in := range df {
		if in.cmd == "FROM" {
			last = i
		}
	}
	return df[last:]
}

// dockerUser returns the final stage's numeric user and group.
func dockerUser(t *testing.T, df []instruction) (uid, gid int) {
	t.Helper()
	var user string
	for _, in := range finalStage(df) {
		if in.cmd == "USER" {
			user = in.args
		}
	}
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil {
		t.Fatalf("USER %q: want a numeric uid[:gid], so Kubernetes' runAsNonRoot can check it", user)
	}
	gid = uid
	if g != "" {
		if gid, err = strconv.Atoi(g); err != nil {
			t.Fatalf("USER %q: the group is not numeric", user)
		}
	}
	return uid, gid
}

// dockerVolume returns the final stage's one VOLUME.
func dockerVolume(t *testing.T, df []instruction) string {
	t.Helper()
	var vols []string
	for _, in := range finalStage(df) {
		if in.cmd == "VOLUME" {
			if err := json.Unmarshal([]byte(in.args), &vols); err != nil {
				vols = strings.Fields(in.args)
			}
		}
	}
	if len(vols) != 1 {
		t.Fatalf("VOLUME %q; want one, for the data", vols)
	}
	return vols[0]
}

// dockerConfigPath returns the --config of the image's CMD.
func dockerConfigPath(t *testing.T, df []instruction) string {
	t.Helper()
	for _, in := range finalStage(df) {
		if in.cmd == "CMD" {
			var args []string
			if err := json.Unmarshal([]byte(in.args), &args); err != nil {
				t.Fatalf("CMD %s: want the exec form: %v", in.args, err)
			}
			if p := flagValue(args, "--config"); p != "" {
				return p
			}
		}
	}
	t.Fatal("the image's CMD has no --config")
	return ""
}

// healthcheck returns the HEALTHCHECK's command, when it has the exec form.
func healthcheck(stage []instruction) []string {
	for _, in := range stage {
		if in.cmd != "HEALTHCHECK" {
			continue
		}
		_, cmd, ok := strings.Cut(in.args, "CMD ")
		var args []string
		if ok && json.Unmarshal([]byte(strings.TrimSpace(cmd)), &args) == nil {
			return args
		}
	}
	return nil
}

var (
	pinnedRE = regexp.MustCompile(`^[a-z0-9./_-]+:([A-Za-z0-9._-]+)@sha256:[0-9a-f]{64}$`)
	goModRE  = regexp.MustCompile(`(?m)^go ([0-9.]+)$`)
)

func TestDockerfile(t *testing.T) {
	ex, df := loadExample(t), parseDockerfile(t)
	final := finalStage(df)

	// Base images: an exact tag and a digest, never a floating one.
	goMod, err := os.ReadFile(repoRoot + "/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := goModRE.FindSubmatch(goMod)
	stages := map[string]bool{}
	for _, in := range df {
		if in.cmd != "FROM" {
			continue
		}
		f := strings.Fields(in.args)
		image := f[0]
		m := pinnedRE.FindStringSubmatch(image)
		switch {
		case stages[image]:
			// An earlier stage of this Dockerfile.
		case m == nil:
			t.Errorf("Dockerfile:%d: FROM %s is not pinned by tag and sha256 digest", in.line, image)
		case m[1] == "latest":
			t.Errorf("Dockerfile:%d: FROM %s uses the latest tag", in.line, image)
		case strings.HasPrefix(image, "golang:") && goVersion != nil && !strings.HasPrefix(m[1], string(goVersion[1])+"-"):
			t.Errorf("Dockerfile:%d: FROM %s: want the Go release go.mod names (%s), so the build downloads no toolchain", in.line, image, goVersion[1])
		}
		if len(f) == 3 && strings.EqualFold(f[1], "AS") {
			stages[f[2]] = true // later stages may start from it
		}
	}

	has := func(cmd, substr string) bool {
		for _, in := range final {
			if in.cmd == cmd && strings.Contains(in.args, substr) {
				return true
			}
		}
		return false
	}
	uid, gid := dockerUser(t, df)
	if uid == 0 {
		t.Error("the image runs as root")
	}
	if hc := healthcheck(final); len(hc) < 2 || path.Base(hc[0]) != "baton" || hc[1] != "healthcheck" {
		t.Errorf(`HEALTHCHECK runs %q; want "baton healthcheck" in the exec form (the image has no shell)`, hc)
	}
	if !has("ENV", "GOMEMLIMIT=") {
		t.Error("GOMEMLIMIT is not set")
	}
	// The health check and the CLI find the admin listener where the
	// example config puts it.
	if !has("ENV", "BATON_ADMIN="+cli.DefaultAdmin) || port(t, strings.TrimPrefix(cli.DefaultAdmin, "http://")) != port(t, ex.cfg.Admin.Listen) {
		t.Errorf("want ENV BATON_ADMIN=%s, on admin.listen's port (%s)", cli.DefaultAdmin, ex.cfg.Admin.Listen)
	}
	vol := dockerVolume(t, df)
	if _, ok := mountOf(ex.cfg.DataDir, []string{vol}); !ok {
		t.Errorf("data_dir %s is not on the image's VOLUME %s", ex.cfg.DataDir, vol)
	}
	// The volume's directory is the user's, so a new named volume is
	// writable.
	owned := false
	for _, in := range final {
		f := strings.Fields(in.args)
		owned = owned || (in.cmd == "COPY" && slices.Contains(f, "--chown="+strconv.Itoa(uid)+":"+strconv.Itoa(gid)) && f[len(f)-1] == vol)
	}
	if !owned {
		t.Errorf("%s is not created owned by %d:%d", vol, uid, gid)
	}
	for _, p := range []string{ex.cfg.Listen, ex.cfg.Admin.Listen} {
		exposed := false
		for _, in := range final {
			exposed = exposed || (in.cmd == "EXPOSE" && slices.Contains(strings.Fields(in.args), strconv.Itoa(port(t, p))))
		}
		if !exposed {
			t.Errorf("port %d (%s) is not exposed", port(t, p), p)
		}
	}
	for _, in := range df {
		if in.cmd == "COPY" && (strings.Contains(in.args, "testdata") || strings.Contains(in.args, ".yaml")) {
			t.Errorf("Dockerfile:%d: COPY %s: the image ships no config; one is mounted", in.line, in.args)
		}
	}

	// The version reaches buildinfo through the linker, from build args.
	var build string
	for _, in := range df {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, v := range []string{"Version", "Commit"} {
		arg := strings.ToUpper(v)
		if !strings.Contains(build, "-X github.com/batonproxy/baton/proxy/buildinfo."+v+"=${"+arg+"}") {
			t.Errorf("go build does not set buildinfo.%s from ${%s}", v, arg)
		}
		found := false
		for _, in := range df {
			found = found || (in.cmd == "ARG" && strings.HasPrefix(in.args, arg))
		}
		if !found {
			t.Errorf("no ARG %s", arg)
		}
	}
}

// TestDockerignoreKeepsTheBuild checks that the build context still has
// every file go build ./cmd/baton reads, and not the history or test data.
// Patterns are matched the way Docker does for the forms used here
// (globs, "**", "!" exceptions, a match on a directory covering it).
func TestDockerignoreKeepsTheBuild(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	ignore := loadDockerignore(t)
	cmd := exec.Command(goTool, "list", "-deps", "-json", "./cmd/baton")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root := absPath(t, repoRoot)
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg struct {
			Dir    string
			Module *struct{ Main bool }
			Files  []string `json:"GoFiles"`
			Embeds []string `json:"EmbedFiles"`
			Other  []string `json:"OtherFiles"`
		}
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if pkg.Module == nil || !pkg.Module.Main {
			continue
		}
		rel, err := filepath.Rel(root, pkg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(pkg.Files, pkg.Embeds, pkg.Other) {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(needed) < 20 {
		t.Fatalf("go list named %d files; is it broken?", len(needed))
	}
	for _, f := range needed {
		if ignore.excludes(f) {
			t.Errorf(".dockerignore leaves %s out of the build context, and the build reads it", f)
		}
	}
	for _, f := range []string{".git/HEAD", "testdata/examples/config/baton.yaml", "policies/testdata/x.yaml", "proxy/config/deploykit_test.go", "faults.test", "baton"} {
		if !ignore.excludes(f) {
			t.Errorf(".dockerignore sends %s to the build", f)
		}
	}
}

type dockerignore []struct {
	re        *regexp.Regexp
	exception bool
}

func loadDockerignore(t *testing.T) dockerignore {
	t.Helper()
	data, err := os.ReadFile(repoRoot + "/.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerignore
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		exception := strings.HasPrefix(line, "!")
		pat := strings.TrimPrefix(path.Clean(strings.TrimPrefix(line, "!")), "/")
		var re strings.Builder
		re.WriteString("^")
		segs := strings.Split(pat, "/")
		for i, s := range segs {
			last := i == len(segs)-1
			switch {
			case s == "**" && last:
				re.WriteString(".*")
			case s == "**":
				re.WriteString("(?:[^/]+/)*")
			default:
				for _, r := range s {
					switch r {
					case '*':
						re.WriteString("[^/]*")
					case '?':
						re.WriteString("[^/]")
					default:
						re.WriteString(regexp.QuoteMeta(string(r)))
					}
				}
				if !last {
					re.WriteString("/")
				}
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re        *regexp.Regexp
			exception bool
		}{regexp.MustCompile(re.String()), exception})
	}
	return d
}

// excludes reports whether a path (slash-separated, relative to the
// context) stays out: the last pattern matching it or a parent decides.
func (d dockerignore) excludes(p string) bool {
	excluded := false
	for _, pat := range d {
		for q := p; q != "." && q != "/"; q = path.Dir(q) {
			if pat.re.MatchString(q) {
				excluded = !pat.exception
				break
			}
		}
	}
	return excluded
}

// Helpers.

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// dataMounts returns c's mounts that dir is on, those at the longest
// mount point that is dir or one of its parents; none when no volume
// holds dir.
func dataMounts(c container, dir string) []volumeMount {
	var paths []string
	for _, m := range c.VolumeMounts {
		paths = append(paths, m.MountPath)
	}
	at, ok := mountOf(dir, paths)
	if !ok {
		return nil
	}
	var held []volumeMount
	for _, m := range c.VolumeMounts {
		if m.MountPath == at {
			held = append(held, m)
		}
	}
	return held
}

// mountOf returns the mount point, of those given, that dir is on: the
// longest that is dir or one of its parents.
func mountOf(dir string, mountPoints []string) (string, bool) {
	best := ""
	for _, m := range mountPoints {
		if (dir == m || strings.HasPrefix(dir, strings.TrimSuffix(m, "/")+"/")) && len(m) > len(best) {
			best = m
		}
	}
	return best, best != ""
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func subset(sub, of map[string]string) bool {
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return true
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
