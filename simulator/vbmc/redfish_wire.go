package vbmc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// The wire format of the vBMC's Redfish answers: JSON with OData-Version,
// errors as DSP0266 error objects carrying one Base registry message.

// internal answers a failure of the machine behind the BMC (libvirt gone).
func (s *redfishServer) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error("Redfish request failed", "while", what, "err", err)
	writeError(w, http.StatusInternalServerError, "InternalError", "The request failed due to an internal service error ("+what+"): "+err.Error())
}

// isJSON refuses a body that is not declared as JSON (415), as bmcweb does.
func isJSON(w http.ResponseWriter, r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "The request body must be application/json.")
		return false
	}
	return true
}

// decode reads a JSON body into v, answering 400 (or 413) itself.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", fmt.Sprintf("The request body is larger than %d bytes.", maxBody))
		return false
	}
	if err != nil || json.Unmarshal(body, v) != nil {
		writeError(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service.")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, body)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("OData-Version", "4.0")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError answers a Redfish error object with one Base message.
func writeError(w http.ResponseWriter, status int, msgID, msg string) {
	id := "Base.1.13." + msgID
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": id, "message": msg,
		"@Message.ExtendedInfo": []map[string]string{{"MessageId": id, "Message": msg, "Severity": "Critical"}},
	}})
}
