package domain

import (
	"encoding/json"
	"fmt"
)

// Registry maps stored event types and payload versions to decoders. A type
// has one current version, decoded into its Go struct; older versions are
// upcast step by step (v1 to v2, v2 to v3, …) as raw JSON before decoding, so
// a payload written years ago reads as today's struct and no stored event is
// ever rewritten. A Registry is filled at start-up and then only read; it is
// safe for concurrent reads.
type Registry struct {
	current  map[string]int
	decoders map[string]func([]byte) (any, error)
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
		decoders: map[string]func([]byte) (any, error){},
		upcasts:  map[upcastKey]func([]byte) ([]byte, error){},
	}
}

// Register makes T the payload of eventType at its current version.
func Register[T any](r *Registry, eventType string, version int) {
	r.current[eventType] = version
	r.decoders[eventType] = func(data []byte) (any, error) {
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

// Decode decodes a payload of eventType written at version.
func (r *Registry) Decode(eventType string, version int, data []byte) (any, error) {
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
