package domain

import (
	"encoding/json"
	"fmt"
	"maps"
)

// Registry maps stored event types and payload versions to decoders. A type
// has one current version, decoded into its Go struct; older versions are
// upcast step by step (v1 to v2, v2 to v3, …) as raw JSON before decoding, so
// a payload written years ago reads as today's struct and no stored event is
// ever rewritten. A Registry is filled at start-up and then only read; it is
// safe for concurrent reads.
type Registry struct {
	current  map[string]int
	decoders map[string]func([]byte) (Event, error)
	upcasts  map[upcastKey]func([]byte) ([]byte, error)
}

type upcastKey struct {
	eventType string
	from      int
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		current:  map[string]int{},
		decoders: map[string]func([]byte) (Event, error){},
		upcasts:  map[upcastKey]func([]byte) ([]byte, error){},
	}
}

// Register makes the payload type T, at schema version version, the current
// form of the stored type T names itself (its EventType). Taking the name
// from T rather than from the caller means a payload cannot be filed under
// another type's name. T must be a struct type, not a pointer: payloads are
// decoded and handled as values. Registering a type name twice panics, since
// two payloads claiming one stored name would make every such event ambiguous.
func Register[T Event](r *Registry, version int) {
	var zero T
	eventType := zero.EventType()
	if _, dup := r.current[eventType]; dup {
		panic(fmt.Sprintf("domain: event type %q registered twice", eventType))
	}
	if version < 1 {
		panic(fmt.Sprintf("domain: event type %q registered at version %d; versions start at 1", eventType, version))
	}
	r.current[eventType] = version
	r.decoders[eventType] = func(data []byte) (Event, error) {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// RegisterUpcast registers how a payload of eventType at version from
// becomes one at version from+1.
func (r *Registry) RegisterUpcast(eventType string, from int, up func(data []byte) ([]byte, error)) {
	r.upcasts[upcastKey{eventType, from}] = up
}

// Versions returns the current schema version of every registered type, as
// a new map the caller owns, so that tests can check each one is pinned by
// fixtures.
func (r *Registry) Versions() map[string]int {
	return maps.Clone(r.current)
}

// Current returns the version eventType is written at now; 0 for a type
// not registered.
func (r *Registry) Current(eventType string) int { return r.current[eventType] }

// Decode decodes a payload of eventType written at version.
func (r *Registry) Decode(eventType string, version int, data []byte) (Event, error) {
	current, ok := r.current[eventType]
	if !ok {
		return nil, fmt.Errorf("decode: unknown event type %q", eventType)
	}
	if version < 1 || version > current {
		return nil, fmt.Errorf("decode %s: unknown schema version %d (current %d)", eventType, version, current)
	}
	for v := version; v < current; v++ {
		up, ok := r.upcasts[upcastKey{eventType, v}]
		if !ok {
			return nil, fmt.Errorf("decode %s: no upcast from version %d", eventType, v)
		}
		var err error
		if data, err = up(data); err != nil {
			return nil, fmt.Errorf("decode %s: upcast from version %d: %w", eventType, v, err)
		}
	}
	out, err := r.decoders[eventType](data)
	if err != nil {
		return nil, fmt.Errorf("decode %s v%d: %w", eventType, version, err)
	}
	return out, nil
}
