package dpconfig

import (
	"strings"
)

// FieldError is one problem in a config file.
type FieldError struct {
	// Field is the path of the setting, e.g. "sharing.timeSlicing.resources[1].replicas";
	// empty for problems with the file as a whole.
	Field string
	Msg   string
	// Unsupported is true for valid settings gpuslice cannot model, false for
	// settings the plugin itself rejects.
	Unsupported bool
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes errors.Is(err, ErrUnsupported) and errors.Is(err, ErrInvalid) work.
func (e *FieldError) Is(target error) bool {
	return (target == ErrUnsupported && e.Unsupported) || (target == ErrInvalid && !e.Unsupported)
}

// Error is what Parse and Load return: every problem found, in the order
// found.
type Error struct {
	// Path is the file's path when it came from Load.
	Path   string
	Fields []*FieldError
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("device plugin config")
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap returns the field errors.
func (e *Error) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}
