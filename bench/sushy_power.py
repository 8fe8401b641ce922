"""The Redfish peer of `make bench`: OpenStack's sushy (Debian's
python3-sushy) reading the power state of one system, as Ironic does, from
THREADS threads, each with its own client and session, for SECONDS.

    sushy_power.py URL USER PASSWORD_FILE SECONDS THREADS

Prints the operations per second. The certificate is not checked (the
vBMC's is self-signed).
"""

import sys
import threading
import time

import sushy
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def main():
    url, user, pwfile, seconds, threads = sys.argv[1:6]
    seconds, threads = float(seconds), int(threads)
    with open(pwfile) as f:
        password = f.read().strip()
    systems = [sushy.Sushy(url, username=user, password=password, verify=False).get_system()
               for _ in range(threads)]
    counts = [0] * threads
    errors = []
    start = time.monotonic()

    def run(i):
        try:
            while time.monotonic() - start < seconds:
                systems[i].refresh()  # GET of the system
                if systems[i].power_state is None:
                    raise RuntimeError("no power state")
                counts[i] += 1
        except Exception as e:  # noqa: BLE001 - reported to the bench
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"sushy: {errors[0]}")
    print(sum(counts) / (time.monotonic() - start))


if __name__ == "__main__":
    main()
