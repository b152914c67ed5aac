package domain

import (
	"encoding/json"
	"testing"
	"time"
)

// receiptStored is a payload of a test registry, at version 2: version 1
// named its time "at", version 2 "readAt".
type receiptStored struct {
	ID     string    `json:"id"`
	ReadAt time.Time `json:"readAt"`
}

func (receiptStored) EventType() string { return "ReceiptStored" }

func (receiptStored) EventID(stream string, version int64) string {
	return versionedEventID(stream, "ReceiptStored", version)
}

// gapped is a payload of a test registry whose upcasts miss a step.
type gapped struct{}

func (gapped) EventType() string { return "Gapped" }

func (gapped) EventID(stream string, version int64) string {
	return versionedEventID(stream, "Gapped", version)
}

// A payload stored at an old version reads as the current struct.
func TestRegistryUpcastsOldVersionsOnRead(t *testing.T) {
	r := NewRegistry()
	Register[receiptStored](r, 2)
	r.RegisterUpcast("ReceiptStored", 1, func(data []byte) ([]byte, error) {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		v["readAt"] = v["at"]
		delete(v, "at")
		return json.Marshal(v)
	})
	old, err := r.Decode("ReceiptStored", 1, []byte(`{"id":"n1","at":"2026-01-02T03:04:05Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := old.(receiptStored)
	if got.ID != "n1" || got.ReadAt.IsZero() || got.ReadAt.Year() != 2026 {
		t.Fatalf("version 1 upcast to %+v", got)
	}
	cur, err := r.Decode("ReceiptStored", 2, []byte(`{"id":"n2","readAt":"2026-01-02T03:04:05Z"}`))
	if err != nil || cur.(receiptStored).ID != "n2" || cur.(receiptStored).ReadAt.IsZero() {
		t.Fatalf("current version: %+v, %v", cur, err)
	}
	if _, err := r.Decode("ReceiptStored", 3, []byte(`{}`)); err == nil {
		t.Fatal("a version from the future decoded")
	}
	r2 := NewRegistry()
	Register[gapped](r2, 3)
	r2.RegisterUpcast("Gapped", 2, func(b []byte) ([]byte, error) { return b, nil })
	if _, err := r2.Decode("Gapped", 1, []byte(`{}`)); err == nil {
		t.Fatal("decoded across a missing upcast step")
	}
}

func TestRegisterRefusesASecondPayloadForOneName(t *testing.T) {
	r := NewRegistry()
	Register[receiptStored](r, 1)
	defer func() {
		if recover() == nil {
			t.Fatal("a type name was registered twice")
		}
	}()
	Register[receiptStored](r, 2)
}

func TestRegistryFilesEachPayloadUnderItsOwnName(t *testing.T) {
	for typ := range Events.Versions() {
		v, err := Events.Decode(typ, Events.Versions()[typ], []byte(`{}`))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if v.EventType() != typ {
			t.Fatalf("stored type %s decodes to a payload of type %s", typ, v.EventType())
		}
	}
}
