# Dovecot 2.3 IMAP server for the real-IMAP tests (tests/imap, tests/brick; marker `imap`).
# Sourced by .ci/debian-deps as root; uses its apt_update_once. Installs only when missing.
# The tests start their own throwaway instance (tests/imap/conftest.py); the system service must
# not start, so a temporary policy-rc.d that denies every start is put in place while installing
# unless the image already has one (spec dovecot-fixture.md §1).
if [ ! -x /usr/sbin/dovecot ] || [ ! -e /usr/lib/dovecot/imap ]; then
    apt_update_once
    _dovecot_policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        _dovecot_policy_added=1
    fi
    _dovecot_rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        dovecot-core dovecot-imapd >/dev/null || _dovecot_rc=$?
    if [ "$_dovecot_policy_added" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    unset _dovecot_policy_added
    if [ "$_dovecot_rc" != 0 ]; then
        echo "debian-deps: installing dovecot-imapd failed (apt-get exit $_dovecot_rc)" >&2
        return "$_dovecot_rc"
    fi
    unset _dovecot_rc
fi
