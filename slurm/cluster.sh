#!/usr/bin/env bash
# A real Slurm 22.05 cluster on this machine, one node or several, for m2rl's tests and local runs.
#
#   bash slurm/cluster.sh up [--nodes N]     # install if needed, configure, start, wait until usable (idempotent)
#   bash slurm/cluster.sh status             # daemons + sinfo; exit 0 only when everything is up and every node usable
#   bash slurm/cluster.sh down               # scancel everything, stop daemons (idempotent)
#   bash slurm/cluster.sh reset [--nodes N]  # down, wipe job ids / spool / accounting DB, up
#
# --nodes N (default: M2RL_SLURM_NODES, else the node set already configured, else 1): N=1 is one node named localhost; N>1 are nodes n1..nN,
# one slurmd each on 127.0.0.1 with its own port (17001..), named in /etc/hosts. Switching between node
# sets cancels the jobs still queued or running, then restarts the daemons on the new set.
#
# Needs root and no systemd (daemons are started directly and tracked by pid file).
# Node size: M2RL_SLURM_CPUS (8), M2RL_SLURM_GPUS (4, fake: symlinks to /dev/null), M2RL_SLURM_MEM_MB (16000).
# Everything listens on loopback only, except slurmdbd (22.05 has no bind option: 0.0.0.0:6819).
set -euo pipefail

CLUSTER=m2rl
ACCOUNT=m2rl
CPUS="${M2RL_SLURM_CPUS:-8}"
GPUS="${M2RL_SLURM_GPUS:-4}"
MEM_MB="${M2RL_SLURM_MEM_MB:-16000}"

CONF_DIR=/etc/slurm                    # the Debian client tools read /etc/slurm/slurm.conf
STATE_DIR=/var/lib/m2rl-slurm          # ctld state (job ids), slurmd spool, MariaDB data, fake GPUs
RUN_DIR=/run/m2rl-slurm                # slurm pid files
LOG_DIR=/var/log/m2rl-slurm
CTLD_STATE="$STATE_DIR/slurmctld"
SLURMD_SPOOL_ROOT="$STATE_DIR"          # one spool per node: slurmd-<node>
DB_DATA="$STATE_DIR/mysql"
FAKE_GPU_DIR="$STATE_DIR/fake_gpus"
DB_CNF="$STATE_DIR/mariadb.cnf"
DB_PASS_FILE="$STATE_DIR/dbpass"
DB_RUN=/run/m2rl-slurm-mysql           # our own MariaDB socket: never clashes with a system MariaDB
DB_SOCK="$DB_RUN/mysqld.sock"          # slurmdbd (libmariadb) finds it through MYSQL_UNIX_PORT
DB_PID="$DB_RUN/mysqld.pid"
MUNGE_PID=/run/munge/munged.pid
MUNGE_SOCK=/run/munge/munge.socket.2
DBD_PID="$RUN_DIR/slurmdbd.pid"
CTLD_PID="$RUN_DIR/slurmctld.pid"
HOSTS_TAG="# m2rl-slurm simulated nodes"

# set_nodes N: NODES (the node names), NODE (the controller's host name), NODE_RANGE (slurm.conf spelling).
set_nodes() {
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer (got '$1')"
  NODES_N=$1
  NODE=localhost
  if ((NODES_N == 1)); then
    NODES=(localhost)
    NODE_RANGE=localhost
  else
    local i
    NODES=()
    for ((i = 1; i <= NODES_N; i++)); do NODES+=("n$i"); done
    NODE_RANGE="n[1-$NODES_N]"
  fi
}
# configured_nodes: the node count the current slurm.conf was written for (1 if there is none).
configured_nodes() {
  local n
  n=$(grep -c '^NodeName=' "$CONF_DIR/slurm.conf" 2>/dev/null || true)
  echo "${n:-1}" | awk '{print ($1 > 0 ? $1 : 1)}'
}
slurmd_pid() { echo "$RUN_DIR/slurmd-$1.pid"; }

PACKAGES=(slurm-wlm slurmctld slurmd slurmdbd slurm-client slurm-wlm-mysql-plugin munge mariadb-server)

T0=${EPOCHREALTIME/./}
say() {
  local dt=$(( (${EPOCHREALTIME/./} - T0) / 100000 ))
  printf '[cluster.sh %3d.%ds] %s\n' $((dt / 10)) $((dt % 10)) "$*"
}
die() {
  echo "[cluster.sh] ERROR: $*" >&2
  if [[ -d "$LOG_DIR" ]]; then
    echo "[cluster.sh] logs are in $LOG_DIR/; last lines:" >&2
    local f
    for f in "$LOG_DIR"/*.log; do
      [[ -s "$f" ]] || continue
      echo "----- $f" >&2
      tail -n 15 "$f" >&2 || true
    done
  fi
  exit 1
}

need_root() { [[ $(id -u) -eq 0 ]] || { echo "cluster.sh must run as root" >&2; exit 1; }; }

# ---------------------------------------------------------------- processes by pid file
# pid_alive PIDFILE NAME: the pid in PIDFILE is a live process whose command name is NAME.
pid_alive() {
  local pf=$1 name=$2 pid
  [[ -r "$pf" ]] || return 1
  pid=$(tr -dc '0-9' <"$pf" 2>/dev/null || true)
  [[ -n "$pid" && -d /proc/$pid ]] || return 1
  [[ "$(cat /proc/$pid/comm 2>/dev/null)" == "$name" ]]
}

# stop_pid PIDFILE NAME LABEL: TERM, wait up to 30 s, then KILL.
stop_pid() {
  local pf=$1 name=$2 label=$3 pid i
  if ! pid_alive "$pf" "$name"; then
    rm -f "$pf"
    return 0
  fi
  pid=$(tr -dc '0-9' <"$pf")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.1
  done
  if [[ -d /proc/$pid ]]; then
    say "$label did not stop in 30 s: SIGKILL $pid"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  fi
  rm -f "$pf"
  say "stopped $label (pid $pid)"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.25 s.
# If WAIT_PIDFILE/WAIT_NAME are set, give up early once that daemon is gone.
WAIT_PIDFILE="" WAIT_NAME=""
wait_for() {
  local secs=$1 what=$2 i n
  shift 2
  n=$((secs * 4))
  for ((i = 0; i < n; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [[ -n "$WAIT_PIDFILE" ]] && ((i >= 8)) && ! pid_alive "$WAIT_PIDFILE" "$WAIT_NAME"; then
      die "$what exited during start-up"
    fi
    sleep 0.25
  done
  die "timed out after ${secs}s waiting for $what"
}
# daemon_wait PIDFILE NAME SECONDS DESCRIPTION COMMAND...
daemon_wait() {
  WAIT_PIDFILE=$1 WAIT_NAME=$2
  shift 2
  wait_for "$@"
  WAIT_PIDFILE="" WAIT_NAME=""
}

# ---------------------------------------------------------------- install
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$LOG_DIR"
  # Keep the packages' init scripts from starting daemons with their default config: we start ours.
  local own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  {
    apt-get update -q && apt-get install -y -q -o Dpkg::Options::=--force-confold "${PACKAGES[@]}"
  } >"$LOG_DIR/apt.log" 2>&1 || rc=$?
  ((own_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get failed (see $LOG_DIR/apt.log)"
  say "packages installed"
}

# ---------------------------------------------------------------- config
# write_if_changed FILE MODE OWNER < content; returns 0 if the file changed.
write_if_changed() {
  local f=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f "$f" ]] && cmp -s "$tmp" "$f"; then
    rm -f "$tmp"
    chmod "$mode" "$f"; chown "$owner" "$f"
    return 1
  fi
  install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$f"
  rm -f "$tmp"
  return 0
}

CONFIG_CHANGED=0

# write_hosts: simulated node names resolve to 127.0.0.1 through one tagged /etc/hosts line.
write_hosts() {
  local line="" tmp
  ((NODES_N == 1)) || line="127.0.0.1 ${NODES[*]} $HOSTS_TAG"
  tmp=$(mktemp)
  grep -vF "$HOSTS_TAG" /etc/hosts >"$tmp" || true
  [[ -z "$line" ]] || echo "$line" >>"$tmp"
  if ! cmp -s "$tmp" /etc/hosts; then cat "$tmp" >/etc/hosts; fi  # in place: /etc/hosts may be a bind mount
  rm -f "$tmp"
}

write_config() {
  [[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "M2RL_SLURM_CPUS must be a positive integer (got '$CPUS')"
  [[ "$GPUS" =~ ^[0-9]+$ ]] || die "M2RL_SLURM_GPUS must be an integer >= 0 (got '$GPUS')"
  [[ "$MEM_MB" =~ ^[1-9][0-9]*$ ]] || die "M2RL_SLURM_MEM_MB must be a positive integer (got '$MEM_MB')"

  install -d -m 0755 -o root -g root "$CONF_DIR" "$STATE_DIR" "$LOG_DIR" "$FAKE_GPU_DIR"
  install -d -m 0755 -o slurm -g slurm "$RUN_DIR" "$CTLD_STATE"
  # Changing SlurmUser on an existing state dir makes slurmctld silently start fresh: keep it owned.
  chown -R slurm:slurm "$CTLD_STATE"
  install -d -m 0755 -o munge -g munge /run/munge
  install -d -m 0755 -o mysql -g mysql "$DB_RUN"
  install -d -m 0750 -o mysql -g mysql "$DB_DATA"
  # Log files pre-created with their daemon's owner (the dir stays root-owned: munged wants that).
  local f
  for f in slurmctld slurmdbd; do
    [[ -e "$LOG_DIR/$f.log" ]] || install -m 0640 -o slurm -g slurm /dev/null "$LOG_DIR/$f.log"
  done
  for f in "${NODES[@]}"; do
    install -d -m 0755 -o root -g root "$SLURMD_SPOOL_ROOT/slurmd-$f"
    [[ -e "$LOG_DIR/slurmd-$f.log" ]] || install -m 0640 -o root -g root /dev/null "$LOG_DIR/slurmd-$f.log"
  done
  [[ -e "$LOG_DIR/mariadb.log" ]] || install -m 0640 -o mysql -g mysql /dev/null "$LOG_DIR/mariadb.log"
  [[ -e "$LOG_DIR/munged.log" ]] || install -m 0640 -o munge -g munge /dev/null "$LOG_DIR/munged.log"

  # Fake GPUs: gres.conf wants device files; symlinks to /dev/null are accepted (regular files are not).
  local i gres_node="" gres_conf="AutoDetect=off"$'\n'
  find "$FAKE_GPU_DIR" -mindepth 1 -maxdepth 1 -name 'gpu*' -delete
  for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$FAKE_GPU_DIR/gpu$i"; done
  if ((GPUS > 0)); then
    gres_node=" Gres=gpu:$GPUS"
    gres_conf+="NodeName=$NODE_RANGE Name=gpu File=$FAKE_GPU_DIR/gpu[0-$((GPUS - 1))]"$'\n'
  fi
  # One NodeName line per node; several nodes share 127.0.0.1 and differ by port.
  local node_lines="" port=""
  for ((i = 0; i < NODES_N; i++)); do
    ((NODES_N == 1)) || port=" Port=$((17001 + i))"
    node_lines+="NodeName=${NODES[i]} NodeAddr=127.0.0.1$port CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB${gres_node} State=UNKNOWN"$'\n'
  done
  write_hosts

  if [[ ! -s "$DB_PASS_FILE" ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DB_PASS_FILE")
  fi
  local dbpass
  dbpass=$(cat "$DB_PASS_FILE")

  write_if_changed "$CONF_DIR/slurm.conf" 0644 root:root <<EOF && CONFIG_CHANGED=1 || true
# Written by m2rl slurm/cluster.sh: a $NODES_N-node test cluster on loopback. Do not edit by hand.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also the delay before a requeued job may start again (default 120 s)
AuthInfo=cred_expire=10
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SlurmdParameters=config_overrides
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
JobRequeue=1
ReturnToService=2
# timers, short for tests
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
InactiveLimit=0
KillWait=10
MinJobAge=300
UnkillableStepTimeout=60
# accounting
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
# files
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL_ROOT/slurmd-%n
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
GresTypes=gpu
${node_lines}PartitionName=cpu    Nodes=$NODE_RANGE Default=YES MaxTime=INFINITE State=UP PriorityTier=1  GraceTime=30
PartitionName=gpu    Nodes=$NODE_RANGE MaxTime=INFINITE State=UP PriorityTier=1  GraceTime=30
PartitionName=urgent Nodes=$NODE_RANGE MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF

  write_if_changed "$CONF_DIR/gres.conf" 0644 root:root <<<"$gres_conf" && CONFIG_CHANGED=1 || true

  # slurmdbd.conf must be 0600 and owned by SlurmUser.
  write_if_changed "$CONF_DIR/slurmdbd.conf" 0600 slurm:slurm <<EOF && CONFIG_CHANGED=1 || true
# Written by m2rl slurm/cluster.sh. Do not edit by hand.
AuthType=auth/munge
DbdHost=$NODE
DbdAddr=127.0.0.1
SlurmUser=slurm
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$dbpass
StorageLoc=slurm_acct_db
EOF

  # MariaDB of our own (own datadir), unix socket only.
  write_if_changed "$DB_CNF" 0644 root:root <<EOF || true
[mysqld]
user = mysql
datadir = $DB_DATA
socket = $DB_SOCK
pid-file = $DB_PID
log-error = $LOG_DIR/mariadb.log
skip-networking
innodb_buffer_pool_size = 512M
innodb_log_file_size = 64M
innodb_lock_wait_timeout = 900
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
EOF
}

# ---------------------------------------------------------------- daemons
munge_ok() { munge -n -S "$MUNGE_SOCK" 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1; }
db() { mariadb --socket="$DB_SOCK" -u root "$@"; }
db_ok() { mariadb-admin --socket="$DB_SOCK" -u root ping >/dev/null 2>&1; }
dbd_ok() { sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

# node_states: "<node> <state>" per node as sinfo prints it (state e.g. idle, mix, alloc, drain, down*)
node_states() { sinfo -h -N -o '%N %t' 2>/dev/null | sort -u; }
usable_state() { case "$1" in idle | mix | alloc | comp) return 0 ;; *) return 1 ;; esac; }
# nodes_usable: slurmctld knows exactly our node set, and every node is usable.
nodes_usable() {
  local states n s
  states=$(node_states)
  [[ "$(awk '{print $1}' <<<"$states" | sort | tr '\n' ' ')" == "$(printf '%s\n' "${NODES[@]}" | sort | tr '\n' ' ')" ]] || return 1
  while read -r n s; do usable_state "$s" || return 1; done <<<"$states"
}
node_summary() {
  local first
  first=$(sinfo -h -N -n "${NODES[0]}" -o 'cpus=%c mem=%mMB gres=%G' 2>/dev/null | head -n1)
  echo "$NODES_N node(s) $NODE_RANGE, each $first"
}

STARTED=()

start_munge() {
  if pid_alive "$MUNGE_PID" munged || munge_ok; then return 0; fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    runuser -u munge -- /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
    say "created /etc/munge/munge.key"
  fi
  # munged refuses to run as root ("Logfile is insecure"): run it as user munge.
  runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" --log-file="$LOG_DIR/munged.log" \
    --socket="$MUNGE_SOCK" >>"$LOG_DIR/munged.log" 2>&1 || die "munged failed to start"
  daemon_wait "$MUNGE_PID" munged 15 "munged" munge_ok
  STARTED+=(munged)
}

start_mariadb() {
  if pid_alive "$DB_PID" mariadbd && db_ok; then return 0; fi
  if db_ok; then
    die "a MariaDB not started by this script answers on $DB_SOCK (pid file $DB_PID missing); stop it first"
  fi
  if [[ ! -d "$DB_DATA/mysql" ]]; then
    say "initialising MariaDB data dir $DB_DATA"
    mariadb-install-db --defaults-file="$DB_CNF" --user=mysql --skip-test-db \
      --auth-root-authentication-method=socket >>"$LOG_DIR/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (see $LOG_DIR/mariadb-install.log)"
  fi
  rm -f "$DB_SOCK" "$DB_PID"
  setsid /usr/sbin/mariadbd --defaults-file="$DB_CNF" </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 &
  daemon_wait "$DB_PID" mariadbd 40 "mariadbd" db_ok
  STARTED+=(mariadbd)
}

db_grant() {
  local dbpass
  dbpass=$(cat "$DB_PASS_FILE")
  db <<EOF || die "could not create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$dbpass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$dbpass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

# adopt PIDFILE NAME: a running NAME whose pid file was lost or overwritten (a second copy that failed
# to bind writes its own pid first) is recorded again, so it is stopped and never started twice.
adopt() {
  local pid
  pid_alive "$1" "$2" && return 0
  pid=$(pgrep -xo "$2" || true)
  [[ -n "$pid" ]] || return 0
  echo "$pid" >"$1"
  say "found $2 running (pid $pid) without its pid file: adopted"
}

start_slurmdbd() {
  adopt "$DBD_PID" slurmdbd
  if pid_alive "$DBD_PID" slurmdbd; then
    wait_for 30 "slurmdbd" dbd_ok
    return 0
  fi
  MYSQL_UNIX_PORT="$DB_SOCK" /usr/sbin/slurmdbd >>"$LOG_DIR/slurmdbd.log" 2>&1 || die "slurmdbd failed to start"
  daemon_wait "$DBD_PID" slurmdbd 40 "slurmdbd" dbd_ok
  STARTED+=(slurmdbd)
}

setup_accounting() {
  local did=()
  if [[ -z "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster 2>/dev/null)" ]]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
    did+=("cluster $CLUSTER")
  fi
  if [[ -z "$(sacctmgr -n -P show account "$ACCOUNT" format=account 2>/dev/null)" ]]; then
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="m2rl runs" Organization=m2rl >/dev/null ||
      die "sacctmgr add account failed"
    did+=("account $ACCOUNT")
  fi
  if [[ -z "$(sacctmgr -n -P show assoc cluster="$CLUSTER" account="$ACCOUNT" user=root format=user 2>/dev/null)" ]]; then
    sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null || die "sacctmgr add user failed"
    did+=("user root in $ACCOUNT")
  fi
  if [[ "$(sacctmgr -n -P show user root format=defaultaccount 2>/dev/null)" != "$ACCOUNT" ]]; then
    sacctmgr -i modify user root set DefaultAccount="$ACCOUNT" >/dev/null || die "sacctmgr modify user failed"
    did+=("root's default account")
  fi
  ((${#did[@]} == 0)) || say "accounting: added ${did[*]}"
}

start_slurmctld() {
  adopt "$CTLD_PID" slurmctld
  if pid_alive "$CTLD_PID" slurmctld; then return 0; fi
  /usr/sbin/slurmctld >>"$LOG_DIR/slurmctld.log" 2>&1 || die "slurmctld failed to start"
  daemon_wait "$CTLD_PID" slurmctld 40 "slurmctld" ctld_ok
  STARTED+=(slurmctld)
}

start_slurmds() {
  local n
  for n in "${NODES[@]}"; do
    pid_alive "$(slurmd_pid "$n")" slurmd && continue
    /usr/sbin/slurmd -N "$n" >>"$LOG_DIR/slurmd-$n.log" 2>&1 || die "slurmd -N $n failed to start"
    STARTED+=("slurmd($n)")
  done
}

# stop_slurmds: every slurmd this script started, whatever node set it was for.
stop_slurmds() {
  local pf
  for pf in "$RUN_DIR"/slurmd-*.pid "$RUN_DIR/slurmd.pid"; do  # slurmd.pid: the one-node layout before --nodes
    [[ -e "$pf" ]] || continue
    stop_pid "$pf" slurmd "slurmd $(basename "$pf" .pid)"
  done
}

wait_nodes() {
  local i n s
  for ((i = 0; i < 120; i++)); do
    nodes_usable && return 0
    while read -r n s; do
      case "$s" in
        drain* | drng | down | fail*)
          # registered but drained/down (e.g. by an earlier bad registration): resume it
          scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true
          say "node $n was '$s': resumed"
          ;;
      esac
    done <<<"$(node_states)"
    sleep 0.25
  done
  sinfo -N -l >&2 || true
  die "nodes $NODE_RANGE not all usable: $(node_states | tr '\n' ' ')"
}

all_running() {
  local n
  munge_ok && pid_alive "$DB_PID" mariadbd && pid_alive "$DBD_PID" slurmdbd && pid_alive "$CTLD_PID" slurmctld || return 1
  for n in "${NODES[@]}"; do pid_alive "$(slurmd_pid "$n")" slurmd || return 1; done
}

# cancel_all: scancel every job and wait (max 30 s) for them to leave the nodes,
# so no slurmstepd outlives its slurmd.
cancel_all() {
  local jobs i
  pid_alive "$CTLD_PID" slurmctld && ctld_ok || return 0
  jobs=$(squeue -h -o %i 2>/dev/null | sort -u || true)
  [[ -n "$jobs" ]] || return 0
  say "cancelling jobs: $(echo $jobs)"
  # shellcheck disable=SC2086
  scancel $jobs 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do
    [[ -z "$(squeue -h -t R,CG,S -o %i 2>/dev/null)" ]] && break
    sleep 0.25
  done
}

# ---------------------------------------------------------------- subcommands
cmd_up() {
  need_root
  install_packages
  local before
  before=$(configured_nodes)
  write_config
  if ((CONFIG_CHANGED)) && pid_alive "$CTLD_PID" slurmctld && ((before != NODES_N)); then
    # jobs placed on the old node set would outlive it (or hold nodes that no longer exist)
    say "node set changes from $before to $NODES_N node(s)"
    cancel_all
  fi
  adopt "$CTLD_PID" slurmctld
  adopt "$DBD_PID" slurmdbd
  if ((CONFIG_CHANGED)); then
    local pf running=0
    for pf in "$CTLD_PID" "$DBD_PID" "$RUN_DIR"/slurmd-*.pid "$RUN_DIR/slurmd.pid"; do
      [[ -e "$pf" ]] && running=1
    done
    if ((running)); then
      say "configuration changed: restarting the Slurm daemons"
      stop_slurmds
      stop_pid "$CTLD_PID" slurmctld slurmctld
      stop_pid "$DBD_PID" slurmdbd slurmdbd
    fi
  fi
  if all_running && dbd_ok && ctld_ok && nodes_usable; then
    say "already up: $(node_summary)"
    return 0
  fi
  start_munge
  start_mariadb
  db_grant
  start_slurmdbd
  setup_accounting
  start_slurmctld
  start_slurmds
  ((${#STARTED[@]} == 0)) || say "started: ${STARTED[*]}"
  wait_nodes
  wait_for 30 "sacct" sacct -n -X -S now-1minutes
  # A test job on every node; not blocking forever if the nodes are full with earlier (restored) jobs.
  if ! timeout 60 srun -N"$NODES_N" -n"$NODES_N" -c1 --mem=100 -t 1 -J m2rl-up-check true >/dev/null 2>"$LOG_DIR/srun-check.err"; then
    cat "$LOG_DIR/srun-check.err" >&2 || true
    die "'srun -N$NODES_N true' failed"
  fi
  say "up: $(node_summary); logs in $LOG_DIR"
}

cmd_down() {
  need_root
  adopt "$CTLD_PID" slurmctld
  adopt "$DBD_PID" slurmdbd
  cancel_all
  stop_slurmds
  stop_pid "$CTLD_PID" slurmctld slurmctld
  stop_pid "$DBD_PID" slurmdbd slurmdbd
  stop_pid "$DB_PID" mariadbd mariadbd
  stop_pid "$MUNGE_PID" munged munged
  say "down"
}

cmd_status() {
  local ok=0 line
  check() { # label pidfile name
    if pid_alive "$2" "$3"; then
      printf '%-10s running (pid %s)\n' "$1" "$(tr -dc '0-9' <"$2")"
    else
      printf '%-10s NOT running\n' "$1"
      ok=1
    fi
  }
  check munged "$MUNGE_PID" munged
  check mariadbd "$DB_PID" mariadbd
  check slurmdbd "$DBD_PID" slurmdbd
  check slurmctld "$CTLD_PID" slurmctld
  local n
  for n in "${NODES[@]}"; do check "slurmd($n)" "$(slurmd_pid "$n")" slurmd; done
  if ctld_ok; then
    sinfo || true
    line=$(node_states | tr '\n' ' ')
    if nodes_usable; then
      echo "nodes $NODE_RANGE: $line(usable)"
    else
      echo "nodes $NODE_RANGE: ${line:-unknown }(NOT usable)"
      ok=1
    fi
    if dbd_ok; then echo "accounting: slurmdbd answers"; else echo "accounting: slurmdbd does NOT answer"; ok=1; fi
  else
    echo "slurmctld does not answer"
    ok=1
  fi
  echo "logs: $LOG_DIR"
  return $ok
}

cmd_reset() {
  need_root
  cmd_down
  say "wiping Slurm state: $CTLD_STATE $SLURMD_SPOOL_ROOT/slurmd-* $DB_DATA"
  rm -rf "$CTLD_STATE" "$SLURMD_SPOOL_ROOT"/slurmd-* "$SLURMD_SPOOL_ROOT/slurmd" "$DB_DATA"
  cmd_up
}

usage() { echo "usage: $0 {up [--nodes N]|down|status|reset [--nodes N]}" >&2; exit 2; }
CMD=${1:-}
shift || true
NODES_ARG=""
while (($#)); do
  case "$1" in
    --nodes) (($# >= 2)) || usage; NODES_ARG=$2; shift 2 ;;
    --nodes=*) NODES_ARG=${1#--nodes=}; shift ;;
    *) usage ;;
  esac
done
case "$CMD" in
  up | reset) set_nodes "${NODES_ARG:-${M2RL_SLURM_NODES:-$(configured_nodes)}}" ;;  # bare: keep the node set
  down | status) [[ -z "$NODES_ARG" ]] || usage; set_nodes "$(configured_nodes)" ;;
  *) usage ;;
esac
case "$CMD" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
esac
