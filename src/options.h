/* options.h: kept for the files that still include it; the options-table check and the typed
 * getters live in rbaux.h (rb_check_keys, rb_opt_*). */
#ifndef RUNBOOK_OPTIONS_H
#define RUNBOOK_OPTIONS_H
#include "rbaux.h"
#endif
