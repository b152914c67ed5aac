package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// InvalidMessage is the error for a producer's message that encoding/json
// could not decode, code message.invalid, said in JSON's words: whoever
// reads the dead letter or the log knows the message, not Herald's Go types.
func InvalidMessage(err error) *Error {
	msg := "message is not valid JSON"
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			msg = "message must be a JSON object, not " + jsonKind(te.Value)
		} else {
			msg = fmt.Sprintf("field %s holds %s where %s is expected", te.Field, jsonKind(te.Value), goKind(te.Type))
		}
	}
	return &Error{Code: CodeInvalidMessage, Message: msg, Err: err}
}

// jsonKind names the kind of JSON value encoding/json reports in an
// UnmarshalTypeError ("number", "object", ... or "number 5").
func jsonKind(value string) string {
	kind, _, _ := strings.Cut(value, " ")
	switch kind {
	case "object", "array":
		return "an " + kind
	case "bool":
		return "a boolean"
	default:
		return "a " + kind
	}
}

// goKind names the JSON value a Go type decodes from.
func goKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	default:
		return "a number"
	}
}
