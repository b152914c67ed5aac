package domain

import (
	"encoding/json"
	"testing"
)

// A payload stored at an old version reads as the current struct: here
// version 1 of a read receipt named its time "at", version 2 "readAt".
func TestRegistryUpcastsOldVersionsOnRead(t *testing.T) {
	r := NewRegistry()
	Register[NotificationRead](r, "ReceiptStored", 2)
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
	got := old.(NotificationRead)
	if got.ID != "n1" || got.ReadAt.IsZero() || got.ReadAt.Year() != 2026 {
		t.Fatalf("version 1 upcast to %+v", got)
	}
	cur, err := r.Decode("ReceiptStored", 2, []byte(`{"id":"n2","readAt":"2026-01-02T03:04:05Z"}`))
	if err != nil || cur.(NotificationRead).ID != "n2" || cur.(NotificationRead).ReadAt.IsZero() {
		t.Fatalf("current version: %+v, %v", cur, err)
	}
	if _, err := r.Decode("ReceiptStored", 3, []byte(`{}`)); err == nil {
		t.Fatal("a version from the future decoded")
	}
	r2 := NewRegistry()
	Register[NotificationRead](r2, "Gapped", 3)
	r2.RegisterUpcast("Gapped", 2, func(b []byte) ([]byte, error) { return b, nil })
	if _, err := r2.Decode("Gapped", 1, []byte(`{}`)); err == nil {
		t.Fatal("decoded across a missing upcast step")
	}
}

func TestEveryStoredTypeIsRegistered(t *testing.T) {
	for _, typ := range []string{EventNotificationRequested, EventNotificationCreated, EventNotificationRead} {
		if _, err := Events.Decode(typ, SchemaVersion, []byte(`{}`)); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
}
