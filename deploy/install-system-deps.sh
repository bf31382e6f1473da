#!/usr/bin/env bash
# Install the Debian packages the project needs, only those missing. Idempotent.
#   ismrmrd-tools  reference C++ ISMRMRD tools (interoperability tests)
#   orthanc        a real PACS for `metai-node import-pacs` tests (tests start their own instance)
#   dcmtk          DICOM command-line tools, for inspecting what the node stores
#   strace         tests prove raw de-identification writes no file (tests/node/test_raw_deid_nodisk.py)
#   postgresql     the coordinator's tests run against PostgreSQL too (tests start their own server)
#   chromium       headless browser the portal's tests drive through Playwright (tests/coordinator/test_portal_browser.py)
#   wrk            HTTP load generator of the coordinator benchmark (benchmarks/coordinator.py)
set -euo pipefail
packages=(ismrmrd-tools orthanc dcmtk strace postgresql chromium wrk)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep the packages' services (orthanc's system instance on 0.0.0.0:8042) from starting:
# Debian's policy-rc.d hook answers 101 ("action forbidden") while we install.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
cleanup() { [ "$own_policy" -eq 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT
# postgresql's postinst creates a "main" cluster on port 5432 (started at the next boot) unless
# createcluster.conf, which also reads createcluster.d/*.conf, says create_main_cluster = false.
# A drop-in written before apt runs needs no edit of the package's own file (ucf would ask about
# that) and also covers a PostgreSQL version installed later.
mkdir -p /etc/postgresql-common/createcluster.d
printf '# Written by MeTAI deploy/install-system-deps.sh: tests start their own PostgreSQL servers.\ncreate_main_cluster = false\n' \
  > /etc/postgresql-common/createcluster.d/metai-no-main-cluster.conf
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
