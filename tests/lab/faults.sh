# tests/lab/faults.sh - faults of the mail lab (sourced by tests/lab/lab)
FAULTS="relay-domain-missing relay-transport-wrong mx-missing mx-wrong mx-port-closed dell-unreachable dovecot-down maildir-permissions user-missing user-disabled domain-missing quota-exceeded queue-stuck db-down disk-almost-full"
valid_fault() { case " $FAULTS " in *" $1 "*) return 0 ;; esac; return 1; }
heal_route() { :; }
