-- runbooks/lib/outcomes.lua: the cause codes remedies and reports end with (findings and
-- verdicts), beside the diagnosis causes of lib/causes.lua. They say how a run ended, not why
-- mail stops, so `undelivered` never ranks them. `runbook check` refuses a literal
-- `cause = "CODE"` in a runbook that neither list holds: add a row here for a new one.
-- Depends on: nothing.
local M = {}

M.LIST = {
  -- every remedy
  { cause = "usage", what = "the run cannot start with what it was given (a missing value, a missing service)" },
  { cause = "declined", what = "the operator declined the change at the confirmation: nothing changed" },
  { cause = "not_fixed", what = "the change was made but re-reading shows the problem is still there" },
  -- container-restart
  { cause = "container_missing", what = "the service's container does not exist" },
  { cause = "service_down", what = "the container runs but the service does not answer (or it is stopped)" },
  -- domain-create, user-create
  { cause = "api_db_disagree", what = "the User Management API and the database disagree about a row" },
  { cause = "api_unavailable", what = "the User Management API does not answer" },
  { cause = "no_password", what = "no password was given (environment, file or prompt)" },
  { cause = "maildir_unexpected", what = "the created user's maildir is not domain/user/" },
  -- maildir-fix
  { cause = "maildir_symlink", what = "a symlink in the Maildir path: refused, nothing changed" },
  -- queue-flush, queue-report, mail-stats
  { cause = "on_hold", what = "the message is on hold (postsuper -H): a flush does not release it" },
  { cause = "queued", what = "mail waits in a Postfix queue" },
  { cause = "deferred_again", what = "after the flush the message was deferred again" },
  { cause = "queue_unreadable", what = "a queue could not be read" },
  { cause = "mail_waiting", what = "mail arrived but no delivery was attempted yet" },
  { cause = "mail_not_delivered", what = "mail was deferred, bounced or rejected in the window" },
  -- message-move
  { cause = "message_not_found", what = "no message with that Message-ID in the mailbox" },
  { cause = "several_messages", what = "more than one message matches: refused, nothing moved" },
  { cause = "message_elsewhere", what = "the message is in another mailbox than the one asked for (not Junk)" },
  -- postfix-param-set
  { cause = "unknown_parameter", what = "Postfix does not know the parameter" },
  { cause = "param_differs", what = "the parameter's value differs from the one asked for" },
  -- examples/banner.lua
  { cause = "content_differs", what = "a file does not hold the text it must" },
  -- trace-message
  { cause = "logs_unavailable", what = "a hop's log could not be read" },
  { cause = "logs_incomplete", what = "a hop's log does not cover the whole window" },
  { cause = "not_found", what = "the message is in no hop's log of the window" },
  { cause = "message_queued", what = "the message still waits in a queue" },
  { cause = "delivered_to_folder", what = "the message was saved, but to a folder other than INBOX" },
}

return M
