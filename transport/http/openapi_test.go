package http_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	herhttp "github.com/heraldhq/herald/transport/http"
)

// The OpenAPI document is checked three ways here:
//
//   - TestOpenAPIDocumentIsValid: it is well-formed OpenAPI 3.1 as far as
//     this document uses it, and every schema in it is valid JSON Schema
//     2020-12 whose references resolve;
//   - TestOpenAPIDocumentsEveryRoute: every documented operation is served,
//     and no undocumented method is served on a documented path;
//   - send (server_test.go) validates every answer any test of this package
//     receives against the operation the request matched, so a route a test
//     reaches but the document does not list, a status it does not list for
//     the route, a missing required header or a body that drifted from its
//     schema fails the test that received it.
//
// Validation uses github.com/santhosh-tekuri/jsonschema/v6: OpenAPI 3.1
// schemas are JSON Schema 2020-12 (the document says so in
// jsonSchemaDialect), and the operation is found with an http.ServeMux built
// from the document's paths, so path matching follows exactly the rules of
// the mux that serves the API.

const openAPIFile = "openapi.json"

// openAPIBase is the URL the document is known by to the schema compiler;
// validation errors name schemas by it.
const openAPIBase = "https://herald.invalid/openapi.json"

type apiSpec struct {
	doc map[string]any
	// mux holds one stub handler per documented "METHOD /path" pattern.
	mux *http.ServeMux
	ops map[string]*specOperation
	// notFound and methodNotAllowed describe the answers to requests that
	// match no documented operation.
	notFound, methodNotAllowed *specResponse
}

type specOperation struct {
	method, path string
	devOnly      bool
	responses    map[string]*specResponse // by status key: "200", "4XX", "default"
}

type specResponse struct {
	pointer string // of the response object, $ref resolved
	headers map[string]specHeader
	// content maps each media type to its schema (nil when not JSON).
	content map[string]*jsonschema.Schema
}

type specHeader struct {
	required bool
	schema   *jsonschema.Schema
}

var loadSpec = sync.OnceValues(func() (*apiSpec, error) {
	raw, err := os.ReadFile(openAPIFile)
	if err != nil {
		return nil, err
	}
	return parseSpec(raw)
})

// openAPI is the document, parsed and compiled once per test binary.
func openAPI(t testing.TB) *apiSpec {
	t.Helper()
	s, err := loadSpec()
	if err != nil {
		t.Fatalf("OpenAPI document %s: %v", openAPIFile, err)
	}
	return s
}

func parseSpec(raw []byte) (*apiSpec, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(openAPIBase, doc); err != nil {
		return nil, err
	}
	s := &apiSpec{doc: doc, mux: http.NewServeMux(), ops: map[string]*specOperation{}}

	paths, _ := doc["paths"].(map[string]any)
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		item, _ := paths[path].(map[string]any)
		for _, method := range slices.Sorted(maps.Keys(item)) {
			if !slices.Contains(operationMethods, method) {
				continue
			}
			ptr := "/paths/" + escapePointer(path) + "/" + method
			o, _ := item[method].(map[string]any)
			op := &specOperation{method: strings.ToUpper(method), path: path, responses: map[string]*specResponse{}}
			op.devOnly, _ = o["x-herald-dev-only"].(bool)
			responses, _ := o["responses"].(map[string]any)
			for status := range responses {
				r, err := s.compileResponse(c, ptr+"/responses/"+escapePointer(status))
				if err != nil {
					return nil, fmt.Errorf("%s %s: response %s: %w", op.method, path, status, err)
				}
				op.responses[status] = r
			}
			pattern := op.method + " " + path
			s.mux.HandleFunc(pattern, func(http.ResponseWriter, *http.Request) {})
			s.ops[pattern] = op
		}
	}
	if s.notFound, err = s.compileResponse(c, "/components/responses/NotFound"); err != nil {
		return nil, fmt.Errorf("NotFound: %w", err)
	}
	if s.methodNotAllowed, err = s.compileResponse(c, "/components/responses/MethodNotAllowed"); err != nil {
		return nil, fmt.Errorf("MethodNotAllowed: %w", err)
	}
	return s, nil
}

// operationMethods are the keys of a path item that hold operations.
var operationMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func escapePointer(token string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(token)
}

func unescapePointer(token string) string {
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(token)
}

// lookup returns the value at the JSON pointer ptr of the document.
func (s *apiSpec) lookup(ptr string) (any, error) {
	var v any = s.doc
	if ptr == "" {
		return v, nil
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		var ok bool
		switch c := v.(type) {
		case map[string]any:
			v, ok = c[unescapePointer(tok)]
		case []any:
			i, err := strconv.Atoi(tok)
			if ok = err == nil && i >= 0 && i < len(c); ok {
				v = c[i]
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: nothing at %q", ptr, unescapePointer(tok))
		}
	}
	return v, nil
}

// resolve follows the $ref of the object at ptr, if any, and returns the
// object and its pointer.
func (s *apiSpec) resolve(ptr string) (map[string]any, string, error) {
	for range 10 {
		v, err := s.lookup(ptr)
		if err != nil {
			return nil, "", err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("%s is not an object", ptr)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr, nil
		}
		if !strings.HasPrefix(ref, "#/") {
			return nil, "", fmt.Errorf("%s: only local references are used, not %q", ptr, ref)
		}
		ptr = strings.TrimPrefix(ref, "#")
	}
	return nil, "", fmt.Errorf("%s: reference loop", ptr)
}

func (s *apiSpec) compileResponse(c *jsonschema.Compiler, ptr string) (*specResponse, error) {
	resp, ptr, err := s.resolve(ptr)
	if err != nil {
		return nil, err
	}
	out := &specResponse{pointer: ptr, headers: map[string]specHeader{}, content: map[string]*jsonschema.Schema{}}
	headers, _ := resp["headers"].(map[string]any)
	for name := range headers {
		h, hptr, err := s.resolve(ptr + "/headers/" + escapePointer(name))
		if err != nil {
			return nil, err
		}
		sch, err := c.Compile(openAPIBase + "#" + hptr + "/schema")
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
		required, _ := h["required"].(bool)
		out.headers[http.CanonicalHeaderKey(name)] = specHeader{required: required, schema: sch}
	}
	content, _ := resp["content"].(map[string]any)
	for mt := range content {
		var sch *jsonschema.Schema
		if isJSON(mt) {
			if sch, err = c.Compile(openAPIBase + "#" + ptr + "/content/" + escapePointer(mt) + "/schema"); err != nil {
				return nil, fmt.Errorf("content %s: %w", mt, err)
			}
		}
		out.content[mt] = sch
	}
	return out, nil
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// response returns the documented response of op for status: the exact
// code, else its range ("4XX"), else default.
func (op *specOperation) response(status int) *specResponse {
	code := strconv.Itoa(status)
	for _, key := range []string{code, code[:1] + "XX", "default"} {
		if r, ok := op.responses[key]; ok {
			return r
		}
	}
	return nil
}

// check validates one answer against the document and returns what does not
// match, each problem a sentence naming the route and the status.
func (s *apiSpec) check(resp *http.Response, body []byte) []string {
	req := resp.Request
	_, pattern := s.mux.Handler(req)
	var r *specResponse
	var route string
	if op, ok := s.ops[pattern]; ok {
		route = fmt.Sprintf("%s %s (documented as %s)", req.Method, req.URL.Path, pattern)
		if r = op.response(resp.StatusCode); r == nil {
			return []string{fmt.Sprintf("%s answered %d, a status openapi.json does not list for it (it lists %v)",
				route, resp.StatusCode, slices.Sorted(maps.Keys(op.responses)))}
		}
	} else {
		route = fmt.Sprintf("%s %s (no documented operation)", req.Method, req.URL.Path)
		switch resp.StatusCode {
		case http.StatusNotFound:
			r = s.notFound
		case http.StatusMethodNotAllowed:
			r = s.methodNotAllowed
		default:
			return []string{fmt.Sprintf("%s answered %d: a route the API serves is missing from openapi.json", route, resp.StatusCode)}
		}
	}
	where := fmt.Sprintf("%s answered %d (openapi.json#%s)", route, resp.StatusCode, r.pointer)

	var problems []string
	for _, name := range slices.Sorted(maps.Keys(r.headers)) {
		h := r.headers[name]
		values := resp.Header.Values(name)
		if len(values) == 0 && h.required {
			problems = append(problems, fmt.Sprintf("%s: required header %s is missing", where, name))
		}
		for _, v := range values {
			if err := h.schema.Validate(v); err != nil {
				problems = append(problems, fmt.Sprintf("%s: header %s %q does not match its schema: %v", where, name, v, err))
			}
		}
	}

	if req.Method == http.MethodHead {
		return problems // the GET operation's answer, without its body
	}
	if len(r.content) == 0 {
		if len(body) > 0 {
			problems = append(problems, fmt.Sprintf("%s: a body, where the document declares none: %s", where, excerpt(body)))
		}
		return problems
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	sch, declared := r.content[mt]
	if err != nil || !declared {
		return append(problems, fmt.Sprintf("%s: Content-Type %q is not one of %v", where, ct, slices.Sorted(maps.Keys(r.content))))
	}
	if sch == nil {
		return problems
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return append(problems, fmt.Sprintf("%s: body is not JSON (%v): %s", where, err, excerpt(body)))
	}
	if err := sch.Validate(inst); err != nil {
		problems = append(problems, fmt.Sprintf("%s: body does not match its schema:\n%v\nbody: %s", where, err, excerpt(body)))
	}
	return problems
}

func excerpt(b []byte) string {
	const limit = 2000
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}

// checkOpenAPI fails t for every way resp and its body differ from the
// document.
func checkOpenAPI(t testing.TB, resp *http.Response, body []byte) {
	t.Helper()
	for _, p := range openAPI(t).check(resp, body) {
		t.Errorf("OpenAPI: %s", p)
	}
}

// openAPISubset is a JSON Schema of the OpenAPI 3.1 objects, and of their
// fields, that this document uses. It is deliberately strict (every object
// closed to unknown fields but x- extensions), so that a misspelt field,
// which OpenAPI tools would silently ignore, fails instead. Schema objects
// are checked separately, by compiling them.
const openAPISubset = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["openapi", "info", "paths", "components"],
  "properties": {
    "openapi": {"type": "string", "pattern": "^3\\.1\\.[0-9]+$"},
    "info": {"$ref": "#/$defs/info"},
    "jsonSchemaDialect": {"const": "https://json-schema.org/draft/2020-12/schema"},
    "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
    "security": {"$ref": "#/$defs/security"},
    "paths": {
      "type": "object",
      "propertyNames": {"pattern": "^/"},
      "additionalProperties": {"$ref": "#/$defs/pathItem"}
    },
    "components": {"$ref": "#/$defs/components"}
  },
  "$ref": "#/$defs/extensible",
  "unevaluatedProperties": false,
  "$defs": {
    "extensible": {"patternProperties": {"^x-": true}},
    "text": {"type": "string", "minLength": 1},
    "info": {
      "type": "object",
      "required": ["title", "version"],
      "properties": {
        "title": {"$ref": "#/$defs/text"},
        "version": {"$ref": "#/$defs/text"},
        "summary": {"$ref": "#/$defs/text"},
        "description": {"$ref": "#/$defs/text"}
      },
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "tag": {
      "type": "object",
      "required": ["name"],
      "properties": {"name": {"$ref": "#/$defs/text"}, "description": {"$ref": "#/$defs/text"}},
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "security": {
      "type": "array",
      "items": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    },
    "reference": {
      "type": "object",
      "required": ["$ref"],
      "properties": {"$ref": {"type": "string", "pattern": "^#/components/"}, "summary": true, "description": true},
      "additionalProperties": false
    },
    "pathItem": {
      "type": "object",
      "properties": {
        "summary": {"$ref": "#/$defs/text"},
        "description": {"$ref": "#/$defs/text"},
        "parameters": {"type": "array", "items": {"$ref": "#/$defs/parameterOrReference"}},
        "get": {"$ref": "#/$defs/operation"},
        "put": {"$ref": "#/$defs/operation"},
        "post": {"$ref": "#/$defs/operation"},
        "delete": {"$ref": "#/$defs/operation"},
        "options": {"$ref": "#/$defs/operation"},
        "head": {"$ref": "#/$defs/operation"},
        "patch": {"$ref": "#/$defs/operation"},
        "trace": {"$ref": "#/$defs/operation"}
      },
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "operation": {
      "type": "object",
      "required": ["operationId", "summary", "responses"],
      "properties": {
        "operationId": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
        "summary": {"$ref": "#/$defs/text"},
        "description": {"$ref": "#/$defs/text"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "parameters": {"type": "array", "items": {"$ref": "#/$defs/parameterOrReference"}},
        "requestBody": {"$ref": "#/$defs/requestBody"},
        "responses": {
          "type": "object",
          "minProperties": 1,
          "propertyNames": {"pattern": "^([1-5]([0-9]{2}|XX)|default)$"},
          "additionalProperties": {"$ref": "#/$defs/responseOrReference"}
        },
        "security": {"$ref": "#/$defs/security"},
        "deprecated": {"type": "boolean"},
        "x-herald-dev-only": {"const": true}
      },
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "parameterOrReference": {
      "if": {"required": ["$ref"]},
      "then": {"$ref": "#/$defs/reference"},
      "else": {"$ref": "#/$defs/parameter"}
    },
    "parameter": {
      "type": "object",
      "required": ["name", "in", "schema"],
      "properties": {
        "name": {"$ref": "#/$defs/text"},
        "in": {"enum": ["query", "header", "path", "cookie"]},
        "description": {"$ref": "#/$defs/text"},
        "required": {"type": "boolean"},
        "deprecated": {"type": "boolean"},
        "schema": {"type": ["object", "boolean"]},
        "example": true
      },
      "if": {"properties": {"in": {"const": "path"}}},
      "then": {"required": ["required"], "properties": {"required": {"const": true}}},
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "requestBody": {
      "type": "object",
      "required": ["content"],
      "properties": {
        "description": {"$ref": "#/$defs/text"},
        "required": {"type": "boolean"},
        "content": {"$ref": "#/$defs/content"}
      },
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "content": {
      "type": "object",
      "minProperties": 1,
      "propertyNames": {"pattern": "^[a-z]+/[a-z0-9.+-]+$"},
      "additionalProperties": {
        "type": "object",
        "required": ["schema"],
        "properties": {"schema": {"type": ["object", "boolean"]}, "example": true},
        "$ref": "#/$defs/extensible",
        "unevaluatedProperties": false
      }
    },
    "responseOrReference": {
      "if": {"required": ["$ref"]},
      "then": {"$ref": "#/$defs/reference"},
      "else": {"$ref": "#/$defs/response"}
    },
    "response": {
      "type": "object",
      "required": ["description"],
      "properties": {
        "description": {"$ref": "#/$defs/text"},
        "headers": {"type": "object", "additionalProperties": {"$ref": "#/$defs/headerOrReference"}},
        "content": {"$ref": "#/$defs/content"}
      },
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "headerOrReference": {
      "if": {"required": ["$ref"]},
      "then": {"$ref": "#/$defs/reference"},
      "else": {"$ref": "#/$defs/header"}
    },
    "header": {
      "type": "object",
      "required": ["schema"],
      "properties": {
        "description": {"$ref": "#/$defs/text"},
        "required": {"type": "boolean"},
        "deprecated": {"type": "boolean"},
        "schema": {"type": ["object", "boolean"]},
        "example": true
      },
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    },
    "components": {
      "type": "object",
      "properties": {
        "schemas": {"type": "object", "additionalProperties": {"type": ["object", "boolean"]}},
        "responses": {"type": "object", "additionalProperties": {"$ref": "#/$defs/response"}},
        "parameters": {"type": "object", "additionalProperties": {"$ref": "#/$defs/parameter"}},
        "headers": {"type": "object", "additionalProperties": {"$ref": "#/$defs/header"}},
        "securitySchemes": {
          "type": "object",
          "additionalProperties": {
            "type": "object",
            "required": ["type", "scheme"],
            "properties": {
              "type": {"const": "http"},
              "scheme": {"$ref": "#/$defs/text"},
              "bearerFormat": {"$ref": "#/$defs/text"},
              "description": {"$ref": "#/$defs/text"}
            },
            "$ref": "#/$defs/extensible",
            "unevaluatedProperties": false
          }
        }
      },
      "patternProperties": {"": {"propertyNames": {"pattern": "^[a-zA-Z0-9._-]+$"}}},
      "$ref": "#/$defs/extensible",
      "unevaluatedProperties": false
    }
  }
}`

var pathParam = regexp.MustCompile(`\{([^{}]+)\}`)

func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	s := openAPI(t) // parses it and compiles every response's schemas

	// The OpenAPI structure.
	c := jsonschema.NewCompiler()
	subset, err := jsonschema.UnmarshalJSON(strings.NewReader(openAPISubset))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("https://herald.invalid/openapi-subset.json", subset); err != nil {
		t.Fatal(err)
	}
	structure, err := c.Compile("https://herald.invalid/openapi-subset.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := structure.Validate(any(s.doc)); err != nil {
		t.Errorf("not the OpenAPI 3.1 this document means to be:\n%v", err)
	}

	// Every schema is valid JSON Schema 2020-12, and every reference, in a
	// schema or not, resolves. Compiling checks a schema against the 2020-12
	// meta-schema, and its references.
	c = jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(openAPIBase, s.doc); err != nil {
		t.Fatal(err)
	}
	walkJSON(s.doc, "", func(ptr string, parent string, v any) {
		m, _ := v.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			if _, err := s.lookup(strings.TrimPrefix(ref, "#")); err != nil || !strings.HasPrefix(ref, "#/") {
				t.Errorf("%s: $ref %q does not resolve", ptr, ref)
			}
		}
		if parent == "schema" || strings.HasPrefix(ptr, "/components/schemas/") && strings.Count(ptr, "/") == 3 {
			if _, err := c.Compile(openAPIBase + "#" + ptr); err != nil {
				t.Errorf("%s: invalid schema: %v", ptr, err)
			}
		}
	})

	// What a schema cannot say: path parameters match the template,
	// operation ids are unique, security requirements name a scheme.
	found, _ := s.lookup("/components/securitySchemes")
	schemes, _ := found.(map[string]any)
	checkSecurity := func(where string, v any) {
		reqs, _ := v.([]any)
		for _, r := range reqs {
			req, _ := r.(map[string]any)
			for name := range req {
				if _, ok := schemes[name]; !ok {
					t.Errorf("%s: security scheme %q is not defined", where, name)
				}
			}
		}
	}
	checkSecurity("document", s.doc["security"])
	ids := map[string]string{}
	for pattern, op := range s.ops {
		itemPtr := "/paths/" + escapePointer(op.path)
		opPtr := itemPtr + "/" + strings.ToLower(op.method)
		found, _ := s.lookup(opPtr)
		o, _ := found.(map[string]any)
		declared := map[string]bool{}
		for _, base := range []string{itemPtr, opPtr} {
			list, _ := s.lookup(base + "/parameters")
			params, _ := list.([]any)
			for i := range params {
				p, _, err := s.resolve(base + "/parameters/" + strconv.Itoa(i))
				if err != nil {
					t.Errorf("%s: parameter %d: %v", pattern, i, err)
					continue
				}
				if name, _ := p["name"].(string); p["in"] == "path" {
					declared[name] = true
				}
			}
		}
		var inTemplate []string
		for _, m := range pathParam.FindAllStringSubmatch(op.path, -1) {
			inTemplate = append(inTemplate, m[1])
		}
		if got := slices.Sorted(maps.Keys(declared)); !slices.Equal(got, slices.Sorted(slices.Values(inTemplate))) {
			t.Errorf("%s: path parameters %v, template has %v", pattern, got, inTemplate)
		}
		id, _ := o["operationId"].(string)
		if other, dup := ids[id]; dup {
			t.Errorf("operationId %q of %s is %s's too", id, pattern, other)
		}
		ids[id] = pattern
		checkSecurity(pattern, o["security"])
		if !slices.ContainsFunc(slices.Collect(maps.Keys(op.responses)), func(k string) bool { return k[0] == '2' || k == "101" }) {
			t.Errorf("%s documents no success answer", pattern)
		}
		if _, ok := op.responses["500"]; !ok {
			t.Errorf("%s does not document the generic 500", pattern)
		}
	}
}

// walkJSON calls f for every value of v, with its JSON pointer and the key
// it is held under.
func walkJSON(v any, ptr string, f func(ptr, parent string, v any)) {
	parent := ""
	if i := strings.LastIndexByte(ptr, '/'); i >= 0 {
		parent = unescapePointer(ptr[i+1:])
	}
	f(ptr, parent, v)
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			walkJSON(e, ptr+"/"+escapePointer(k), f)
		}
	case []any:
		for i, e := range v {
			walkJSON(e, ptr+"/"+strconv.Itoa(i), f)
		}
	}
}

// servedOutsideServer are the documented routes that `herald serve` mounts
// itself next to Server's (cmd/herald/serve.go), so no mux built here serves
// them.
var servedOutsideServer = []string{"GET /v1/stream", "GET /metrics"}

// TestOpenAPIDocumentsEveryRoute probes a mux set up by Register and
// RegisterDevIdentity. http.ServeMux cannot list its routes, so the probes
// come from the document: every documented operation must be served under
// exactly its documented pattern (parameter names included), and every
// method the document does not list for a path must not be. A route on a new
// path cannot be found by probing; send catches it instead, as soon as a test
// gets any answer but 404 or 405 from it.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	s := openAPI(t)
	api := herhttp.NewServer(herhttp.Deps{})
	plain := http.NewServeMux()
	api.Register(plain)
	full := http.NewServeMux()
	api.Register(full)
	api.RegisterDevIdentity(full, mustIssuer(t, issuerName))

	probe := func(mux *http.ServeMux, method, path string) string {
		req := httptest.NewRequest(method, pathParam.ReplaceAllString(path, "probe"), nil)
		_, pattern := mux.Handler(req)
		return pattern
	}
	paths := map[string]bool{}
	for pattern, op := range s.ops {
		paths[op.path] = true
		got, plainGot := probe(full, op.method, op.path), probe(plain, op.method, op.path)
		switch {
		case slices.Contains(servedOutsideServer, pattern):
			if got != "" {
				t.Errorf("%s: now served by Server as %q; drop it from servedOutsideServer", pattern, got)
			}
		case got != pattern:
			t.Errorf("%s is documented, but the mux serves %q for it", pattern, got)
		case op.devOnly && plainGot != "":
			t.Errorf("%s is documented as dev-only (x-herald-dev-only) but Register serves it", pattern)
		case !op.devOnly && plainGot != pattern:
			t.Errorf("%s is served only by RegisterDevIdentity; mark it x-herald-dev-only", pattern)
		}
	}
	for _, want := range servedOutsideServer {
		if _, ok := s.ops[want]; !ok {
			t.Errorf("%s is not documented", want)
		}
	}
	// HEAD is left out: ServeMux answers it with the GET handler.
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace}
	for path := range paths {
		for _, m := range methods {
			if _, documented := s.ops[m+" "+path]; documented {
				continue
			}
			// Another documented pattern may match the probe (GET
			// /v1/notifications/read-all is GET /v1/notifications/{id}).
			if got := probe(full, m, path); got != "" && s.ops[got] == nil {
				t.Errorf("%s %s is served (as %q) but not documented", m, path, got)
			}
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	herhttp.NewServer(herhttp.Deps{}).Register(mux)
	srv := httptest.NewServer(herhttp.Middleware(slog.New(slog.DiscardHandler), mux))
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv}

	r := e.do(http.MethodGet, "/v1/openapi.json", "", nil) // no token: it is public
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", r.status, r.header.Get("Content-Type"))
	}
	if !bytes.Equal(r.body, want) {
		t.Fatalf("served document differs from %s", openAPIFile)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, %v", doc.OpenAPI, err)
	}
}

// The validation in send is only worth having if it fails on drift.
func TestOpenAPIValidationCatchesDrift(t *testing.T) {
	t.Parallel()
	s := openAPI(t)
	const ts = "2026-11-23T09:00:00Z"
	item := `{"id":"8d3e5c1a-6f1b-4c2e-9a7d-1b2c3d4e5f60","type":"PAYMENT_SUCCESS","organizerId":"org-1","recipientId":"alice",` +
		`"content":"c","actionUrl":null,"data":{},"isRead":false,"isArchived":false,"createdAt":"` + ts + `"%s}`
	okMeta := `,"meta":{"request_id":"r1","timestamp":"` + ts + `"}}`
	jsonHeader := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"r1"}}
	cases := []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		want               string // a fragment of the one problem expected; "" for none
	}{
		{"valid item", "GET", "/v1/notifications/x", 200, jsonHeader, `{"data":` + fmt.Sprintf(item, "") + okMeta, ""},
		{"extra field", "GET", "/v1/notifications/x", 200, jsonHeader, `{"data":` + fmt.Sprintf(item, `,"snoozed":true`) + okMeta, "snoozed"},
		{"readAt while unread", "GET", "/v1/notifications/x", 200, jsonHeader, `{"data":` + fmt.Sprintf(item, `,"readAt":"`+ts+`"`) + okMeta, "body does not match"},
		{"missing request id", "GET", "/v1/notifications/x", 200, http.Header{"Content-Type": {"application/json"}},
			`{"data":` + fmt.Sprintf(item, "") + okMeta, "required header X-Request-Id"},
		{"undocumented status", "GET", "/healthz", 418, jsonHeader, `{}`, "does not list"},
		{"undocumented route", "GET", "/v1/reports", 200, jsonHeader, `{}`, "missing from openapi.json"},
		{"unknown route", "GET", "/nope", 404, jsonHeader,
			`{"error":{"code":"common.not_found","message":"no such route","details":{}},"meta":{"trace_id":"r1","timestamp":"` + ts + `"}}`, ""},
		{"405 without Allow", "DELETE", "/healthz", 405, jsonHeader,
			`{"error":{"code":"common.method_not_allowed","message":"m","details":{"allow":"GET"}},"meta":{"trace_id":"r1","timestamp":"` + ts + `"}}`, "required header Allow"},
		{"wrong error code", "GET", "/v1/notifications", 401, http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r1"}, "Www-Authenticate": {`Bearer realm="herald"`}},
			`{"error":{"code":"auth.forbidden","message":"m","details":{}},"meta":{"trace_id":"r1","timestamp":"` + ts + `"}}`, "body does not match"},
		{"text where JSON is due", "GET", "/readyz", 200, http.Header{"Content-Type": {"text/plain"}, "X-Request-Id": {"r1"}}, "ready", "Content-Type"},
	}
	for _, c := range cases {
		resp := &http.Response{StatusCode: c.status, Header: c.header, Request: httptest.NewRequest(c.method, c.path, nil)}
		problems := s.check(resp, []byte(c.body))
		switch {
		case c.want == "" && len(problems) != 0:
			t.Errorf("%s: unexpected problems %q", c.name, problems)
		case c.want != "" && (len(problems) != 1 || !strings.Contains(problems[0], c.want)):
			t.Errorf("%s: problems %q, want one naming %q", c.name, problems, c.want)
		}
	}
}
