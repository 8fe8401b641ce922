"""Drives the virtual BMC's Redfish service with OpenStack's sushy (Debian's
python3-sushy), a client neither Racker nor the simulator wrote.

    sushy_client.py SCENARIO URL USER PASSWORD_FILE [SESSION_TIMEOUT]

The password comes from a file, never from the command line. Each scenario
asserts what it sees and exits non-zero with the reason on the first
surprise; sushy_test.go checks the machine behind the BMC afterwards.
"""

import sys
import time

import requests
import sushy
import urllib3
from sushy import auth as sushy_auth
from sushy import exceptions

# The vBMC's certificate is self-signed, like a factory BMC's.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def expect(what, got, want):
    if got != want:
        raise SystemExit(f"{what}: got {got!r}, want {want!r}")
    print(f"ok: {what} = {got!r}")


def connect(url, user, password, auth=None):
    if auth is not None:
        return sushy.Sushy(url, auth=auth, verify=False)
    return sushy.Sushy(url, username=user, password=password, verify=False)


def boot(system):
    b = system.boot
    return (b.enabled, b.target, b.mode)


def power(url, user, password):
    s = connect(url, user, password)
    system = s.get_system()  # the one system, found through the collection
    expect("power at start", system.power_state, sushy.PowerState.OFF)
    allowed = system.get_allowed_reset_system_values()
    for r in (sushy.ResetType.ON, sushy.ResetType.FORCE_OFF,
              sushy.ResetType.GRACEFUL_SHUTDOWN, sushy.ResetType.FORCE_RESTART):
        if r not in allowed:
            raise SystemExit(f"reset type {r} not offered: {allowed}")
    system.reset_system(sushy.ResetType.ON)
    system.refresh()
    expect("power after On", system.power_state, sushy.PowerState.ON)
    system.reset_system(sushy.ResetType.FORCE_RESTART)
    system.refresh()
    expect("power after ForceRestart", system.power_state, sushy.PowerState.ON)
    system.reset_system(sushy.ResetType.GRACEFUL_SHUTDOWN)
    system.refresh()
    expect("power after GracefulShutdown", system.power_state, sushy.PowerState.OFF)
    try:
        system.reset_system(sushy.ResetType.FORCE_OFF)
        raise SystemExit("ForceOff of a machine that is off was accepted")
    except exceptions.HTTPError as e:
        expect("ForceOff when off: HTTP status", e.status_code, 409)
    system.reset_system(sushy.ResetType.ON)
    system.reset_system(sushy.ResetType.FORCE_OFF)
    system.refresh()
    expect("power after ForceOff", system.power_state, sushy.PowerState.OFF)
    manager = s.get_manager()
    expect("manager type", manager.manager_type, sushy.ManagerType.BMC)
    expect("manager firmware", manager.firmware_version, "1.00")


def override(url, user, password):
    s = connect(url, user, password)
    system = s.get_system()
    expect("boot at start", boot(system),
           (sushy.BootSourceOverrideEnabled.DISABLED, sushy.BootSource.NONE,
            sushy.BootSourceOverrideMode.LEGACY))
    allowed = system.get_allowed_system_boot_source_values()
    expect("allowed boot sources", sorted(a.value for a in allowed), ["Hdd", "None", "Pxe"])

    # Once, UEFI, PXE: used by the next boot, then Disabled.
    system.set_system_boot_options(sushy.BootSource.PXE,
                                   enabled=sushy.BootSourceOverrideEnabled.ONCE,
                                   mode=sushy.BootSourceOverrideMode.UEFI)
    system.refresh()
    expect("boot after Once/Pxe/UEFI", boot(system),
           (sushy.BootSourceOverrideEnabled.ONCE, sushy.BootSource.PXE,
            sushy.BootSourceOverrideMode.UEFI))
    system.reset_system(sushy.ResetType.ON)  # boot 1: PXE
    system.refresh()
    expect("boot after the one boot", boot(system)[0],
           sushy.BootSourceOverrideEnabled.DISABLED)
    system.reset_system(sushy.ResetType.FORCE_RESTART)  # boot 2: default

    # Continuous, Legacy, disk: every boot.
    system.set_system_boot_options(sushy.BootSource.HDD,
                                   enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS,
                                   mode=sushy.BootSourceOverrideMode.LEGACY)
    system.refresh()
    expect("boot after Continuous/Hdd/Legacy", boot(system),
           (sushy.BootSourceOverrideEnabled.CONTINUOUS, sushy.BootSource.HDD,
            sushy.BootSourceOverrideMode.LEGACY))
    system.reset_system(sushy.ResetType.FORCE_RESTART)  # boot 3: disk
    system.reset_system(sushy.ResetType.FORCE_RESTART)  # boot 4: disk
    system.refresh()
    expect("continuous boot stays", boot(system)[0],
           sushy.BootSourceOverrideEnabled.CONTINUOUS)

    # Continuous, UEFI, PXE (the target alone changes the device).
    system.set_system_boot_options(sushy.BootSource.PXE,
                                   mode=sushy.BootSourceOverrideMode.UEFI)
    system.reset_system(sushy.ResetType.FORCE_RESTART)  # boot 5: PXE
    system.refresh()
    expect("boot after a target-only change", boot(system),
           (sushy.BootSourceOverrideEnabled.CONTINUOUS, sushy.BootSource.PXE,
            sushy.BootSourceOverrideMode.UEFI))
    system.set_system_boot_options(enabled=sushy.BootSourceOverrideEnabled.DISABLED)
    system.reset_system(sushy.ResetType.FORCE_RESTART)  # boot 6: default
    system.reset_system(sushy.ResetType.FORCE_OFF)


def wrong_password(url, user, password):
    # sushy's default auth tries a session, falls back to Basic, and only
    # learns the password is wrong at the first request.
    try:
        s = connect(url, user, password + "-wrong")
        s.get_system()
        raise SystemExit("a wrong password was accepted")
    except exceptions.AccessError as e:
        expect("wrong password: HTTP status", e.status_code, 401)
    # Session auth alone fails at login.
    try:
        connect(url, None, None, auth=sushy_auth.SessionAuth(user, password + "-wrong"))
        raise SystemExit("a session was opened with a wrong password")
    except exceptions.AccessError as e:
        expect("wrong password, session login: HTTP status", e.status_code, 401)


def expired_session(url, user, password, timeout):
    a = sushy_auth.SessionAuth(user, password)
    s = connect(url, None, None, auth=a)
    system = s.get_system()
    old_token, old_uri = a.get_session_key(), a.get_session_resource_id()
    expect("session URI", old_uri.startswith("/redfish/v1/SessionService/Sessions/"), True)
    time.sleep(timeout + 0.5)
    # The token is dead on the wire ...
    r = requests.get(url + "/redfish/v1/Systems/system", verify=False,
                     headers={"X-Auth-Token": old_token})
    expect("expired token: HTTP status", r.status_code, 401)
    # ... and sushy logs in again by itself on the 401.
    system.refresh()
    expect("power after re-login", system.power_state, sushy.PowerState.OFF)
    expect("a new session token", a.get_session_key() != old_token, True)
    r = requests.get(url + old_uri, verify=False, headers={"X-Auth-Token": a.get_session_key()})
    expect("the expired session is gone: HTTP status", r.status_code, 404)


def main():
    scenario, url, user, pwfile = sys.argv[1:5]
    with open(pwfile) as f:
        password = f.read().strip()
    if scenario == "power":
        power(url, user, password)
    elif scenario == "override":
        override(url, user, password)
    elif scenario == "wrong-password":
        wrong_password(url, user, password)
    elif scenario == "expired-session":
        expired_session(url, user, password, float(sys.argv[5]))
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()
