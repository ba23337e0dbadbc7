# tests/data/openwrt/stub/procd.sh: owns a fake of the parts of OpenWrt's
# /etc/rc.common and procd.sh that openwrt/rkite/files/rkite.init calls, so
# tests/openwrt.rs can run the init script's functions on a desktop: source
# this, then the init script, then call a function. Every call is appended
# to the file $PROCD_LOG, one line each; procd_running answers from
# $PROCD_RUNNING (1: rkite runs).

procd_log() {
	printf '%s\n' "$*" >>"$PROCD_LOG"
}

procd_open_instance() { procd_log procd_open_instance "$@"; }
procd_set_param() { procd_log procd_set_param "$@"; }
procd_close_instance() { procd_log procd_close_instance "$@"; }
procd_send_signal() { procd_log procd_send_signal "$@"; }
procd_add_reload_trigger() { procd_log procd_add_reload_trigger "$@"; }
procd_running() {
	procd_log procd_running "$@"
	[ "${PROCD_RUNNING:-0}" = 1 ]
}
start() { procd_log start "$@"; }
stop() { procd_log stop "$@"; }
logger() { procd_log logger "$@"; }
