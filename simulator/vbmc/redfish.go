package vbmc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
)

// The Redfish side of the virtual BMC (DMTF DSP0266), the part of it that a
// provisioner uses, shaped after OpenBMC's bmcweb:
//
//	GET    /redfish                                  version map (no auth)
//	GET    /redfish/v1/                              service root (no auth)
//	GET    /redfish/v1/Systems[/system]              the one computer system
//	PATCH  /redfish/v1/Systems/system                Boot override (If-Match honoured)
//	POST   /redfish/v1/Systems/system/Actions/ComputerSystem.Reset
//	GET    /redfish/v1/Managers[/bmc[/EthernetInterfaces[/eth0]]]
//	GET    /redfish/v1/SessionService
//	GET    /redfish/v1/SessionService/Sessions[/ID], POST (login, no auth), DELETE ID
//
// Power and boot go to the same chassis the IPMI side drives, so both
// protocols see one machine. It is strict where BMCs are: every resource
// but the service root needs a session or Basic credentials; a PATCH with
// an unknown property, a bad value or a stale If-Match is refused whole;
// a reset the machine's state does not allow (On when on, ForceRestart when
// off) is a 409; bodies must be JSON and small.

// Resource paths. The IDs are bmcweb's ("system", "bmc"), so a client that
// assumes "1" (as some do) fails here as it would on OpenBMC hardware.
const (
	rfRoot           = "/redfish/v1/"
	rfSystems        = "/redfish/v1/Systems"
	rfSystem         = rfSystems + "/system"
	rfReset          = rfSystem + "/Actions/ComputerSystem.Reset"
	rfManagers       = "/redfish/v1/Managers"
	rfManager        = rfManagers + "/bmc"
	rfManagerNICs    = rfManager + "/EthernetInterfaces"
	rfManagerNIC     = rfManagerNICs + "/eth0"
	rfSessionService = "/redfish/v1/SessionService"
	rfSessions       = rfSessionService + "/Sessions"
)

// resetTypes are the ComputerSystem.Reset types served.
var resetTypes = []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"}

// maxBody bounds request bodies: a boot PATCH is a few hundred bytes.
const maxBody = 64 << 10

// redfishServer is the HTTP handler of one vBMC's Redfish service.
type redfishServer struct {
	ch             *chassis
	nic            *nicInfo
	sessions       *sessionStore
	user, password string
	uuid           string
	serial         string
	ipmiSOL        bool // the BMC serves IPMI with a console (SerialConsole.IPMI)
	log            *slog.Logger
	mux            *http.ServeMux
}

func newRedfishServer(ch *chassis, nic *nicInfo, sessions *sessionStore, user, password string, ipmiSOL bool, log *slog.Logger) *redfishServer {
	sum := sha256.Sum256([]byte("racker-vbmc:" + ch.name))
	h := hex.EncodeToString(sum[:16])
	s := &redfishServer{
		ch: ch, nic: nic, sessions: sessions, user: user, password: password, ipmiSOL: ipmiSOL, log: log,
		uuid:   h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32],
		serial: "RSIM" + h[:8],
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /redfish", s.versions)
	m.HandleFunc("GET /redfish/{$}", s.versions)
	m.HandleFunc("GET /redfish/v1", s.root)
	m.HandleFunc("GET /redfish/v1/{$}", s.root)
	m.HandleFunc("POST "+rfSessions, s.login)
	m.HandleFunc("GET "+rfSystems, s.auth(s.collection(rfSystems, "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection", rfSystem)))
	m.HandleFunc("GET "+rfSystem, s.auth(s.getSystem))
	m.HandleFunc("PATCH "+rfSystem, s.auth(s.patchSystem))
	m.HandleFunc("POST "+rfReset, s.auth(s.reset))
	m.HandleFunc("GET "+rfManagers, s.auth(s.collection(rfManagers, "#ManagerCollection.ManagerCollection", "Manager Collection", rfManager)))
	m.HandleFunc("GET "+rfManager, s.auth(s.getManager))
	m.HandleFunc("GET "+rfManagerNICs, s.auth(s.collection(rfManagerNICs, "#EthernetInterfaceCollection.EthernetInterfaceCollection", "Manager Ethernet Interfaces", rfManagerNIC)))
	m.HandleFunc("GET "+rfManagerNIC, s.auth(s.getManagerNIC))
	m.HandleFunc("GET "+rfSessionService, s.auth(s.getSessionService))
	m.HandleFunc("GET "+rfSessions, s.auth(s.listSessions))
	m.HandleFunc("GET "+rfSessions+"/{id}", s.auth(s.getSession))
	m.HandleFunc("DELETE "+rfSessions+"/{id}", s.auth(s.deleteSession))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path))
	})
	s.mux = m
	return s
}

func (s *redfishServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	s.mux.ServeHTTP(w, r)
}

// auth refuses a request without a live session or Basic credentials.
func (s *redfishServer) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authenticate(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="racker-sim vBMC"`)
			writeError(w, http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
			return
		}
		h(w, r)
	}
}

type odataID struct {
	ID string `json:"@odata.id"`
}

func link(path string) odataID { return odataID{ID: path} }

func (s *redfishServer) versions(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"v1": rfRoot})
}

func (s *redfishServer) root(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":      rfRoot,
		"@odata.type":    "#ServiceRoot.v1_11_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": "1.15.0",
		"UUID":           s.uuid,
		"Vendor":         "Racker",
		"Product":        "racker-sim virtual BMC",
		"Systems":        link(rfSystems),
		"Managers":       link(rfManagers),
		"SessionService": link(rfSessionService),
		"Links":          map[string]any{"Sessions": link(rfSessions)},
	})
}

// collection answers a resource collection with one member.
func (s *redfishServer) collection(path, typ, name, member string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": path, "@odata.type": typ, "Name": name,
			"Members": []odataID{link(member)}, "Members@odata.count": 1,
		})
	}
}

// system is the ComputerSystem resource as it is now.
func (s *redfishServer) system(ctx context.Context) (map[string]any, error) {
	on, err := s.ch.reportedOn(ctx)
	if err != nil {
		return nil, err
	}
	power := "Off"
	if on {
		power = "On"
	}
	o := s.ch.bootOverride()
	return map[string]any{
		"@odata.id":    rfSystem,
		"@odata.type":  "#ComputerSystem.v1_16_0.ComputerSystem",
		"Id":           "system",
		"Name":         s.ch.name,
		"SystemType":   "Physical",
		"Manufacturer": "Racker",
		"Model":        "racker-sim virtual server",
		"SerialNumber": s.serial,
		"UUID":         s.uuid,
		"BiosVersion":  "racker-sim 1.0",
		"PowerState":   power,
		"Status":       map[string]string{"State": "Enabled", "Health": "OK", "HealthRollup": "OK"},
		"Boot": map[string]any{
			"BootSourceOverrideEnabled":                        o.Enabled,
			"BootSourceOverrideTarget":                         o.Target,
			"BootSourceOverrideMode":                           o.Mode,
			"BootSourceOverrideTarget@Redfish.AllowableValues": allowedTargets,
		},
		"SerialConsole": map[string]any{"IPMI": map[string]bool{"ServiceEnabled": s.ipmiSOL}},
		"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
			"target": rfReset, "ResetType@Redfish.AllowableValues": resetTypes,
		}},
		"Links": map[string]any{"ManagedBy": []odataID{link(rfManager)}},
	}, nil
}

// etagOf is a strong ETag of a representation: it changes whenever the
// resource does, which is what If-Match needs.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

func (s *redfishServer) systemJSON(ctx context.Context) ([]byte, error) {
	sys, err := s.system(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(sys)
}

func (s *redfishServer) getSystem(w http.ResponseWriter, r *http.Request) {
	body, err := s.systemJSON(r.Context())
	if err != nil {
		s.internal(w, "reading the system", err)
		return
	}
	w.Header().Set("ETag", etagOf(body))
	writeRaw(w, http.StatusOK, body)
}

// patchSystem accepts {"Boot": {BootSourceOverride…}} and nothing else.
func (s *redfishServer) patchSystem(w http.ResponseWriter, r *http.Request) {
	if !isJSON(w, r) {
		return
	}
	if match := r.Header.Get("If-Match"); match != "" && match != "*" {
		body, err := s.systemJSON(r.Context())
		if err != nil {
			s.internal(w, "reading the system", err)
			return
		}
		if match != etagOf(body) {
			writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource.")
			return
		}
	}
	var raw map[string]json.RawMessage
	if !decode(w, r, &raw) {
		return
	}
	for k := range raw {
		if k != "Boot" {
			writeError(w, http.StatusBadRequest, "PropertyNotWritable", fmt.Sprintf("The property %s is a read only property and cannot be assigned a value.", k))
			return
		}
	}
	var bootRaw map[string]json.RawMessage
	if err := json.Unmarshal(raw["Boot"], &bootRaw); err != nil || bootRaw == nil {
		writeError(w, http.StatusBadRequest, "PropertyValueTypeError", "The value of the property Boot is not an object.")
		return
	}
	var p bootPatch
	for k, v := range bootRaw {
		var dst **string
		switch k {
		case "BootSourceOverrideEnabled":
			dst = &p.Enabled
		case "BootSourceOverrideTarget":
			dst = &p.Target
		case "BootSourceOverrideMode":
			dst = &p.Mode
		default:
			writeError(w, http.StatusBadRequest, "PropertyUnknown", fmt.Sprintf("The property Boot/%s is not in the list of valid properties for the resource.", k))
			return
		}
		var sv string
		if err := json.Unmarshal(v, &sv); err != nil {
			writeError(w, http.StatusBadRequest, "PropertyValueTypeError", fmt.Sprintf("The value %s for the property Boot/%s is not a string.", v, k))
			return
		}
		*dst = &sv
	}
	if err := s.ch.setBootOverride(p); err != nil {
		var pe *propertyError
		if errors.As(err, &pe) {
			writeError(w, http.StatusBadRequest, "PropertyValueNotInList", "The value "+pe.Value+" for the property "+pe.Property+" is not in the list of acceptable values ("+fmt.Sprint(pe.Allowed)+").")
			return
		}
		s.internal(w, "setting the boot override", err)
		return
	}
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
}

// reset maps ComputerSystem.Reset onto the chassis, as IPMI's Chassis
// Control does, refusing what the machine's state does not allow.
func (s *redfishServer) reset(w http.ResponseWriter, r *http.Request) {
	if !isJSON(w, r) {
		return
	}
	var req struct{ ResetType *string }
	if !decode(w, r, &req) {
		return
	}
	if req.ResetType == nil {
		writeError(w, http.StatusBadRequest, "ActionParameterMissing", "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.")
		return
	}
	rt := *req.ResetType
	if !slices.Contains(resetTypes, rt) {
		writeError(w, http.StatusBadRequest, "ActionParameterNotSupported", fmt.Sprintf("The parameter ResetType value %s for the action ComputerSystem.Reset is not supported by the implementation (supported: %v).", rt, resetTypes))
		return
	}
	ctx := r.Context()
	on, err := s.ch.reportedOn(ctx)
	if err != nil {
		s.internal(w, "reading the power state", err)
		return
	}
	conflict := func(state string) {
		writeError(w, http.StatusConflict, "ResetTypeNotAllowedInState", fmt.Sprintf("The reset type %s is not allowed while the system is %s.", rt, state))
	}
	switch rt {
	case "On":
		if on {
			conflict("on")
			return
		}
		err = s.ch.powerOn(ctx)
	case "ForceOff":
		if !on {
			conflict("off")
			return
		}
		err = s.ch.powerOff(ctx)
	case "GracefulShutdown":
		if !on {
			conflict("off")
			return
		}
		err = s.ch.softOff(ctx)
	case "ForceRestart":
		err = s.ch.cycle(ctx, "Redfish ForceRestart")
	case "PowerCycle":
		err = s.ch.cycle(ctx, "Redfish PowerCycle")
	}
	if errors.Is(err, errNotInThisState) {
		conflict("off")
		return
	}
	if err != nil {
		s.internal(w, "doing "+rt, err)
		return
	}
	s.log.Info("Redfish reset", "type", rt)
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
}

func (s *redfishServer) getManager(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":          rfManager,
		"@odata.type":        "#Manager.v1_11_0.Manager",
		"Id":                 "bmc",
		"Name":               "racker-sim vBMC of " + s.ch.name,
		"ManagerType":        "BMC",
		"Manufacturer":       "Racker",
		"Model":              "racker-sim vBMC",
		"FirmwareVersion":    "1.00",
		"UUID":               s.uuid,
		"PowerState":         "On",
		"Status":             map[string]string{"State": "Enabled", "Health": "OK"},
		"EthernetInterfaces": link(rfManagerNICs),
		"Links":              map[string]any{"ManagerForServers": []odataID{link(rfSystem)}},
	})
}

func (s *redfishServer) getManagerNIC(w http.ResponseWriter, r *http.Request) {
	cfg, _ := s.nic.GetConfig(r.Context())
	mac := net.HardwareAddr(cfg.MAC[:]).String()
	origin := "Static"
	if cfg.DHCP {
		origin = "DHCP"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":           rfManagerNIC,
		"@odata.type":         "#EthernetInterface.v1_6_0.EthernetInterface",
		"Id":                  "eth0",
		"Name":                "Manager Ethernet Interface",
		"MACAddress":          mac,
		"PermanentMACAddress": mac,
		"InterfaceEnabled":    true,
		"Status":              map[string]string{"State": "Enabled", "Health": "OK"},
		"IPv4Addresses": []map[string]string{{
			"Address":       net.IP(cfg.IP[:]).String(),
			"SubnetMask":    net.IP(cfg.Mask[:]).String(),
			"Gateway":       net.IP(cfg.Gateway[:]).String(),
			"AddressOrigin": origin,
		}},
	})
}
