// Package unitd is the simulated management node's service manager: its
// PID 1 and its systemctl and journalctl. Racker's installer and its
// racker-serve unit talk to systemd; a Flatcar-shaped node needs something
// that answers the same way, and a real systemd cannot run in the
// simulator's namespaces. So unitd implements the part of systemd they
// use, with systemd's semantics and strictness:
//
//   - units from /etc, /run and /usr/lib/systemd/system with NAME.service.d
//     drop-ins (an empty ExecStart= resets the list), Environment= and
//     EnvironmentFile=, $VAR and ${VAR} in command lines, $MAINPID;
//   - Type=simple, exec, oneshot and notify ($NOTIFY_SOCKET; the start
//     waits for READY=1 up to TimeoutStartSec=, NotifyAccess= checked by
//     the sender's credentials; RELOADING=1, STOPPING=1, STATUS=: notify.go);
//     ExecStartPre/Post, ExecReload,
//     ExecStop; Restart= with RestartSec= and systemd's start limit (5
//     starts in 10 s); KillSignal= to the unit's process group, SIGKILL
//     after TimeoutStopSec=;
//   - loaded definitions are kept until daemon-reload, and a unit file
//     changed on disk draws systemd's warning;
//   - enable/disable make and remove the [Install] symlinks; units wanted
//     by multi-user.target start at boot;
//   - systemctl start, stop, restart, try-restart, reload,
//     reload-or-restart, enable, disable (--now), is-active, is-enabled,
//     is-failed, status, show (-p, --value), cat, daemon-reload,
//     reset-failed, list-units, with systemctl's messages and exit codes;
//   - journalctl -u UNIT [-n N] [-f] over one log file per unit.
//
// What it does not do, on purpose: dependencies and ordering (After=,
// Requires=: units start in name order), sockets, timers, targets as units,
// cgroups (a unit's processes are its process group), and the settings
// listed in Unit.Ignored (capabilities, limits: everything runs as root).
// systemctl talks to PID 1 over ControlSocket.
package unitd
