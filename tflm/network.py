"""Is the network there? One bounded TCP probe for every download path (TFDS, Hugging Face, Kaggle)."""

import socket
import threading


def probe(hosts, timeout):
    """(ok, why): whether a TCP connection to every ``(host, port)`` of `hosts` opens within `timeout` s.

    DNS lookups ignore socket timeouts, so the whole probe runs in a daemon thread that is
    given `timeout` seconds; `why` says what failed (None when `ok`).
    """
    result = {}

    def connect():
        try:
            for host, port in hosts:
                with socket.create_connection((host, port), timeout=timeout):
                    pass
            result["ok"] = True
        except OSError as e:
            result["error"] = e

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False, f"no answer within {timeout:g} s"
    if "ok" in result:
        return True, None
    return False, str(result.get("error"))
