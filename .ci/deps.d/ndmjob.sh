# shellcheck shell=bash
# Amanda's ndmjob (NDMP v2/3/4 DMA, tape and data agent) for the NDMP interop tests (tests/ndmp).
# Sourced by .ci/debian-deps as root, from the repository root. We unpack amanda-common into
# .ci/ndmjob/ (git-ignored) instead of installing it, because the package pulls a mail server
# (exim4), inetd and mailx; only the shared libraries ndmjob links against are installed with apt.
# Tests find the binary at .ci/ndmjob/usr/lib/amanda/ndmjob, or at $MAILTAPE_NDMJOB.

ndmjob_root=.ci/ndmjob
ndmjob_bin=$ndmjob_root/usr/lib/amanda/ndmjob
ndmjob_libdir=$ndmjob_root/usr/lib/x86_64-linux-gnu/amanda

ndmjob_works() {
    [ -x "$ndmjob_bin" ] && LD_LIBRARY_PATH="$ndmjob_libdir" "$ndmjob_bin" -v 2>/dev/null | grep -q NDMPv4
}

if ndmjob_works; then
    echo "debian-deps: ndmjob present in $ndmjob_root"
else
    ndmjob_tmp=$(mktemp -d)
    chmod 755 "$ndmjob_tmp"    # apt-get download drops privileges to _apt
    chown _apt "$ndmjob_tmp" 2>/dev/null || true
    apt_update_once
    if (cd "$ndmjob_tmp" && apt-get download -qq amanda-common); then
        rm -rf "$ndmjob_root"
        mkdir -p "$ndmjob_root"
        dpkg -x "$ndmjob_tmp"/amanda-common_*.deb "$ndmjob_root"
        # Install the library packages amanda-common depends on, when they are missing.
        ndmjob_libs=$(dpkg-deb -f "$ndmjob_tmp"/amanda-common_*.deb Depends | tr ',' '\n' \
            | sed -e 's/([^)]*)//g' -e 's/|.*//' -e 's/ //g' | grep '^lib' | grep -v perl || true)
        ndmjob_missing=""
        for pkg in $ndmjob_libs; do
            dpkg -s "$pkg" >/dev/null 2>&1 || ndmjob_missing="$ndmjob_missing $pkg"
        done
        if [ -n "$ndmjob_missing" ]; then
            # shellcheck disable=SC2086
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $ndmjob_missing
        fi
        if LD_LIBRARY_PATH="$ndmjob_libdir" ldd "$ndmjob_bin" | grep -q 'not found'; then
            echo "debian-deps: ndmjob still misses libraries:" >&2
            LD_LIBRARY_PATH="$ndmjob_libdir" ldd "$ndmjob_bin" | grep 'not found' >&2
        fi
        if ndmjob_works; then
            echo "debian-deps: ndmjob unpacked into $ndmjob_root"
        else
            echo "debian-deps: ndmjob unpacked but does not run; NDMP interop tests will be skipped" >&2
        fi
    else
        echo "debian-deps: could not download amanda-common; NDMP interop tests will be skipped" >&2
    fi
    rm -rf "$ndmjob_tmp"
fi
unset ndmjob_root ndmjob_bin ndmjob_libdir ndmjob_tmp ndmjob_libs ndmjob_missing pkg
unset -f ndmjob_works
