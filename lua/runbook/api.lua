---@meta _
-- runbook.api: the runbook API written down once, as LuaLS definitions (a "meta" file: it
-- declares, it does nothing). Editors with the Lua language server complete and type-check
-- runbooks against it: point `workspace.library` at the directory holding lua/ (installed:
-- $(PREFIX)/share/runbook/lua) and write `---@type Runbook` above a runbook's `return {`.
--
-- It is also the source of `runbook doc [METHOD]` and of the README's API section
-- (lua/runbook/doc.lua reads this file as text; `make doc` rewrites the README between its
-- markers). tests/lua/doc.t fails when a public ctx method has no entry here, when an entry
-- names a method that does not exist, or when the README is out of date.
-- The engine never loads it as code; loading it anyway only defines locals and returns nil.
--
-- The format, so that doc.lua can read it: every ctx method is one `function Ctx:name(...) end`
-- preceded by its `---` block: a one-line summary, free text (Markdown; an example in a ```lua
-- fence), then @param and @return lines. The failure shape `nil, message, code` is three @return
-- lines, the last named `code` and typed with the codes (string literals or aliases of them) the
-- method can really return. Every code has one line in `ErrCode` saying what it means.

---@alias ErrCode
---| "timeout"     # no answer within the call's timeout, or the run's deadline has passed
---| "refused"     # nothing accepts the connection (TCP RST, daemon or socket missing, DNS REFUSED)
---| "unreachable" # no route to the address (ICMP, no such host), or a name that cannot be resolved
---| "auth"        # the server refused the credentials, or the inventory's secret variable is not set
---| "hostkey"     # the SSH server's host key is unknown or differs from known_hosts
---| "notfound"    # no such file, command, container, parameter or environment variable
---| "denied"      # permission denied (file mode, sudo, SSH forwarding, a secret the operator did not name)
---| "type"        # not a regular file (a FIFO, device or directory where a file was expected)
---| "cap"         # larger than the size limit (a file past `max`, a response past `max_body`)
---| "short"       # a secret file holds fewer than 3 bytes (it could not be masked)
---| "nxdomain"    # DNS: the name does not exist
---| "servfail"    # DNS: the server failed to answer (SERVFAIL)
---| "nodata"      # DNS: the name exists but has no record of that type
---| "sql"         # the database refused the statement (syntax, unknown column, constraint)
---| "http"        # HTTP status 4xx/5xx, or a transfer or JSON failure (the response is the 4th value)
---| "protocol"    # the peer answered something that cannot be parsed
---| "tls"         # TLS handshake, certificate or STARTTLS failure
---| "io"          # any other I/O failure (a command that failed for a reason not listed here)
---| "closed"      # the connection or container is closed or not running (the next call reconnects)
---| "usage"       # a bad value the runbook passed that is not a programming error (read_secret)
---| "notty"       # a prompt was asked for but there is no terminal
---| "eof"         # a prompt got end of input instead of an answer
---| "dryrun"      # a write without --apply: nothing was changed, the would-record was shown
---| "declined"    # a write the operator declined at the confirmation prompt: nothing was changed
---| "journal"     # the audit journal's intent line could not be written: nothing was changed
---| "lookup"      # a lookup table or Dovecot's userdb/passdb could not answer (postmap cannot open or query the table; doveadm exit 75)

---@alias WriteCode "dryrun"|"declined"|"journal"
---@alias SecretCode "auth"|"notfound"|"denied"|"type"|"io"|"cap"|"short"
---@alias HostCode "timeout"|"refused"|"unreachable"|"auth"|"hostkey"|"closed"|"denied"|"notfound"|"protocol"|"io"
---@alias ServiceCode HostCode|"http"
---@alias DnsCode "timeout"|"refused"|"unreachable"|"nxdomain"|"servfail"|"protocol"|"io"

---@alias SqlValue string|integer|number|boolean|userdata

---@class ExecResult
---@field stdout string standard output (at most `max_output` bytes)
---@field stderr string standard error
---@field status integer|nil exit status (nil when killed by a signal)
---@field signal integer|nil the signal that ended it
---@field truncated boolean|nil true when output past `max_output` was dropped
---@field ms number how long it ran, in milliseconds

---@class ExecOpts
---@field timeout? number seconds (default: the inventory's defaults.timeout; never past the deadline)
---@field max_output? integer bytes of output kept (default 8 MiB)
---@field stdin? string sent to the command's standard input
---@field read_only? boolean accepted for old runbooks; decides nothing (the gate's table does)

---@class Lines
---@operator call: string|nil
local Lines = {}
---Ends the stream (idempotent; also `<close>`): status, signal and stderr of the command, and
---the error and code of a stream that failed midway.
---@return {status: integer|nil, signal: integer|nil, stderr: string|nil, error: string|nil, code: ErrCode|nil}
function Lines:close() end

---@class DfResult
---@field filesystem string
---@field size_kb integer
---@field used_kb integer
---@field avail_kb integer
---@field use_pct integer
---@field mount string

---@class StatResult
---@field owner string user name (same as `user`)
---@field user string
---@field group string
---@field uid integer
---@field gid integer
---@field mode string octal permission bits as text, e.g. "0755" (same as `perms`)
---@field perms string
---@field type "file"|"directory"|"link"|"fifo"|"socket"|"char"|"block"|string
---@field size integer bytes

---@class FileStat
---@field uid integer
---@field gid integer
---@field user string|nil user name, when the uid has one
---@field group string|nil group name, when the gid has one
---@field mode integer permission bits as a number (0755 is 493)
---@field perms string the same as octal text, e.g. "0755"
---@field type "file"|"directory"|"symlink"|"socket"|"fifo"|"other"
---@field size integer bytes

---@class LocalDf
---@field size_kb integer
---@field used_kb integer
---@field avail_kb integer
---@field use_pct integer
---@field files integer inodes
---@field files_free integer free inodes

---@class TcpResult
---@field ms number connect time in milliseconds
---@field via? "direct-tcpip"|"exec" from an SSH host: through the SSH server, or its own bash
---@field peer? string "ip:port" (from the local machine)
---@field ["local"] string|nil the local "ip:port" (from the local machine)

---@class SqlResult
---@field columns string[] column names in order
---@field rows table<string, SqlValue>[] one table per row, keyed by column name
---@field truncated boolean|nil true when more than 10000 rows were cut

---@class SqlWriteResult
---@field affected integer rows changed
---@field insert_id integer|nil
---@field warnings integer|nil
---@field before table[]|nil rows of opts.before read before the write
---@field after table[]|nil the same rows re-read after it

---@class HttpResponse
---@field status integer
---@field headers table<string, string> lower-cased names
---@field data any the decoded JSON body, or nil
---@field body string the raw body
---@field ms number

---@class DnsRecord
---@field name string
---@field type string "A", "MX", ...
---@field ttl integer
---@field data string the record as dig prints it
---@field address? string A/AAAA
---@field preference? integer MX
---@field exchange? string MX
---@field text? string TXT (joined)
---@field strings? string[] TXT
---@field target? string CNAME, NS, PTR

---@class DnsResult
---@field qname string
---@field qtype string
---@field rcode string "NOERROR"
---@field nodata boolean true when the name exists without a record of this type
---@field answers DnsRecord[]
---@field authority DnsRecord[]
---@field additional DnsRecord[]
---@field server string
---@field port integer
---@field tcp boolean|nil
---@field ms number

---@class SmtpResult
---@field ok boolean every stage up to `stop` was accepted
---@field last_stage string the last stage reached
---@field transcript {dir: "S"|"C", text: string, code: integer|nil, enhanced: string|nil, t: number}[]
---@field stages table connect, greeting, helo, starttls, mail, rcpt (a list), data, quit
---@field queued_as string|nil queue id the server gave after DATA
---@field lmtp_session string|nil
---@field message_id string|nil
---@field probe_id string|nil
---@field tls boolean|nil
---@field peer string
---@field ms number

---@class QueueEntry
---@field queue_name string "active", "deferred", "hold", ...
---@field queue_id string
---@field arrival_time integer epoch seconds
---@field message_size integer
---@field sender string
---@field recipients {address: string, delay_reason: string|nil}[]
---@field forced_expire boolean|nil

---@class ContainerState
---@field name string
---@field id string
---@field running boolean
---@field status string "running", "exited", ...
---@field exit_code integer
---@field restart_count integer
---@field started_at string RFC 3339
---@field started number|nil epoch seconds
---@field finished_at string
---@field image string
---@field labels table<string, string>
---@field tty boolean
---@field health string|nil "healthy", "unhealthy", "starting"
---@field pid integer
---@field oom_killed boolean

---@class LogRecord
---@field host string
---@field service string "host/svc"
---@field container string
---@field stream "stdout"|"stderr"|"merged"
---@field ts string|nil the RFC 3339 timestamp docker recorded
---@field time number|nil the same in epoch seconds
---@field line string

---@class DockerLogsOpts
---@field since? string|number a duration before now ("30m"), epoch seconds or RFC 3339
---@field ["until"] string|number|nil the same, for the end of the window
---@field tail? integer only the last N lines
---@field grep? string|string[]|fun(rec: LogRecord): boolean keep only matching records
---@field max? integer matches kept with grep (default 10000)
---@field stdout? boolean
---@field stderr? boolean
---@field timeout? number seconds

---@class Logs
---@operator call: LogRecord|nil
---@field read integer lines read
---@field matched integer lines that matched `grep`
---@field truncated boolean|nil more matched than `max`
local Logs = {}
---The error of a stream that failed midway (after the call returned), or nothing.
---@return string|nil message
---@return ErrCode|nil code
function Logs:err() end
---Stops reading (idempotent; also `<close>`).
function Logs:close() end

---@class Evidence
---@field host? string
---@field time? string|number
---@field source? string "sql", "log", "postconf", ...
---@field text? string
---@field value? any

---@class Fix
---@field runbook string the remedy's name
---@field args? table<string, string|number|boolean> its arguments (true: a flag)

---@class FindingSpec
---@field severity? "info"|"warn"|"fail"|"ok" default "fail" ("ok" is accepted and ranks as "info")
---@field cause? string a cause code (at most 256 bytes)
---@field hop? string where on the mail's path (at most 256 bytes)
---@field message string what was found (at most 64 KiB)
---@field evidence? (Evidence|string)[] at most 1000 items
---@field fix? string|Fix a command line, or a remedy to run

---@class CheckResult
---@field name string
---@field status "ok"|"fail"|"unknown"|"skipped"
---@field hop? string
---@field why? string

---@class VerdictSpec
---@field status "healthy"|"problem"|"escalate"
---@field cause? string
---@field hop? string
---@field message? string
---@field evidence? (Evidence|string)[]
---@field fix? string|Fix
---@field checks? CheckResult[] every check and how it ended; "healthy" is refused while one is fail or unknown

---@class ArgSpec
---@field name string the option name (--NAME)
---@field type "string"|"integer"|"boolean"|"email"|"domain"|"duration"|"choice"|"queue_id"|"path"|"service"
---@field required? boolean
---@field default? any
---@field help? string
---@field choices? string[]
---@field min? number
---@field max? number
---@field pattern? string
---@field secret? boolean masked in every output
---@field example? string

---@class Runbook
---@field description string one line
---@field kind? "diagnosis"|"remedy"|"report"
---@field help? string
---@field args? ArgSpec[]
---@field hosts? string[] hosts it touches: inventory names or roles (@mx, @mailserver)
---@field run fun(ctx: Ctx)

---The per-run context: the only way a runbook reaches the world. `run(ctx)` receives a read-only
---proxy; call its methods as `ctx:name(...)`. A programming error (a wrong argument type, an
---unknown option) raises and names the argument; an operational failure returns
---`nil, message, code` with a code from `ErrCode`.
---@class Ctx
---@field args table<string, any> the run's arguments, checked against the declaration (read-only)
---@field inventory table the inventory without where its secrets live (no password_env, password_file, token_env, token_file, passphrase_env or key)
---@field run_id string the run's random id (also in every JSON event)
---@field apply boolean true with --apply: writes are really made (after confirmation)
local Ctx = {}

-- ---------------------------------------------------------------- steps and results

---Run `fn` as a named, timed step; an error inside it is contained.
---
---The step's start and end are events (text, JSON, report). Its status is the worst finding
---stated inside it (ok, warn, fail), `skipped` after `ctx:skip`, or `error` when `fn` raised: the
---error is contained so that later steps still run, and `step` returns `nil, reason` (a
---traceback), with no code. A usage error (`ctx:usage_error`) and the deadline are not contained.
---
---Example:
---```lua
---local row = ctx:step("db.user", function()
---  local r = assert(ctx:sql("mail", "SELECT enabled FROM users WHERE email = ?", ctx.args.addr))
---  return r.rows[1]
---end, "the user exists")
---```
---@param name string the step's name (dotted by convention: "db.user")
---@param fn fun(ctx: Ctx): any the step's body; it receives ctx and may return values
---@param title? string a human title shown next to the name
---@return any ... fn's results; nil and the reason when fn raised or skipped
function Ctx:step(name, fn, title) end

---End the current step as skipped (raises; `ctx:step` catches it).
---
---The step's status becomes `skipped` with `reason`, and `ctx:step` returns `nil, reason`.
---Outside a step nothing catches it: the run ends with exit 3.
---
---Example:
---```lua
---ctx:step("queues", function()
---  if ctx.args["no-queues"] then ctx:skip("--no-queues") end
---end)
---```
---@param reason? string why (default "skipped")
function Ctx:skip(reason) end

---State a finding: what was seen, where, the evidence and the fix.
---
---The table is copied and checked at once (plain data, no metatables; `message` required;
---unknown fields raise). A `fix` table becomes a `runbook run ...` command line. The enclosing
---steps take the finding's severity as their status. Returns a copy of the finding event.
---
---Example:
---```lua
---ctx:finding { severity = "fail", cause = "user_missing", hop = "dell.db",
---              message = "no such user", evidence = { { host = "dell", source = "sql", text = "0 rows" } },
---              fix = { runbook = "user-create", args = { addr = ctx.args.addr } } }
---```
---@param f FindingSpec
---@return table finding the finding event as recorded (a copy)
function Ctx:finding(f) end

---Every finding stated so far in this run, in order (copies).
---
---Example:
---```lua
---for _, f in ipairs(ctx:findings()) do if f.severity == "fail" then failed = true end end
---```
---@return table[] findings
function Ctx:findings() end

---End the diagnosis with a verdict: healthy, problem or escalate, and the fix.
---
---Checked and copied like a finding. `checks` lists every check and how it ended; the engine
---refuses `healthy` (raises) while a listed check is `fail` or `unknown`. Exit status: 0 for
---healthy, 1 otherwise. A later call replaces an earlier one. Returns a copy of the verdict event.
---
---Example:
---```lua
---ctx:verdict { status = "problem", cause = "user_missing", hop = "dell.db",
---              message = "info@example.jp has no row in users",
---              fix = { runbook = "user-create", args = { addr = "info@example.jp" } } }
---```
---@param v VerdictSpec
---@return table verdict the verdict event as recorded (a copy)
function Ctx:verdict(v) end

---Print a line of commentary (text) or a `note` event (JSON).
---
---The runbook's `print`: runbooks have none. Masked like every output.
---
---Example:
---```lua
---ctx:note(("%d messages waiting"):format(#q))
---```
---@param msg any shown with tostring
function Ctx:note(msg) end

---Show what a long step is doing now (a transient line on a terminal).
---
---Example:
---```lua
---ctx:progress("scanning the mail log")
---```
---@param msg any shown with tostring
function Ctx:progress(msg) end

---Turn a fix into the exact command line an operator would type.
---
---A string is returned as it is. `{runbook=, args=}` becomes `runbook run NAME --k v ...` with
---the arguments sorted and shell-quoted (`true` is a bare flag, `false` is left out), plus
---`--inventory PATH` when the run's inventory came from a file.
---
---Example:
---```lua
---local cmd = ctx:fix_command { runbook = "maildir-fix", args = { domain = "example.jp" } }
---```
---@param fix string|Fix
---@return string command
function Ctx:fix_command(fix) end

---End the run as a usage error (raises): exit 2 with `msg` on stderr, as for a bad command line.
---
---For argument problems the declared types cannot express (two options that exclude each
---other, a default the inventory lacks). Exit 2 only before any primitive ran; after one it is
---exit 3 (something already ran). `ctx:step` does not contain it.
---
---Example:
---```lua
---if ctx.args["message-id"] and ctx.args["queue-id"] then
---  ctx:usage_error("give --message-id or --queue-id, not both")
---end
---```
---@param msg string the message (non-empty)
function Ctx:usage_error(msg) end

-- ---------------------------------------------------------------- time

---Seconds since the run started (monotonic clock).
---
---Example:
---```lua
---ctx:note(("checked in %.1f s"):format(ctx:elapsed()))
---```
---@return number seconds
function Ctx:elapsed() end

---Wall-clock time: epoch seconds with sub-second precision.
---
---`os.time()` has whole seconds; a bound taken from it takes in lines written up to a second
---before it.
---
---Example:
---```lua
---local started = ctx:time()
---```
---@return number epoch
function Ctx:time() end

---Wait `seconds`: at most 60 s per call, never past the run's deadline.
---
---Example:
---```lua
---ctx:sleep(0.5)
---```
---@param seconds number non-negative
function Ctx:sleep(seconds) end

-- ---------------------------------------------------------------- secrets

---Obtain a secret the operator named: an environment variable, a 0600 file, or a no-echo prompt.
---
---`env` or `file` must be the value of one of the run's arguments (the operator named it on the
---command line); a name the runbook picked on its own is `denied`. The file must be a regular
---file of the running user, mode 0600 or stricter, not a symlink. The value is masked in every
---output from then on. A value shorter than 3 bytes is refused (`usage`; `short` from a file).
---Unknown option keys raise.
---
---Example:
---```lua
---local pw, msg, code = ctx:read_secret { env = ctx.args["password-env"] }
---if not pw then ctx:usage_error(msg) end
---```
---@param o {env?: string, file?: string, prompt?: string} one of them, tried in this order
---@return string|nil secret
---@return string|nil message
---@return "usage"|"denied"|"notfound"|"notty"|"timeout"|"eof"|"type"|"io"|"cap"|"short"|nil code
function Ctx:read_secret(o) end

-- ---------------------------------------------------------------- commands (runbook.prim.host)

---Run a command (argv, never a shell) on an inventory host, locally or over SSH.
---
---A WRITE unless the gate's read-only table lists the argv (`cat`, `stat`, `postconf` without
---`-e`, ...): without --apply a write returns `nil, "dry run: ...", "dryrun"`. A command that
---runs and exits non-zero is a result, not a failure: check `r.status`. Over SSH the command
---runs under `timeout -k 2 N` on the server. Unknown hosts and options raise.
---
---Example:
---```lua
---local r, msg, code = ctx:exec("dell", { "cat", "/etc/hostname" })
---if r and r.status == 0 then ctx:note(r.stdout) end
---```
---@param host string an inventory host name, or "local"
---@param argv string[] the command and its arguments
---@param opts? ExecOpts
---@return ExecResult|nil result
---@return string|nil message
---@return HostCode|WriteCode|nil code
function Ctx:exec(host, argv, opts) end

---Run a command on an SSH host (as `ctx:exec`; raises when the host is not `transport: ssh`).
---
---Example:
---```lua
---local r = ctx:ssh_exec("ec2", { "uptime" })
---```
---@param host string an inventory host with transport ssh
---@param argv string[]
---@param opts? ExecOpts
---@return ExecResult|nil result
---@return string|nil message
---@return HostCode|WriteCode|nil code
function Ctx:ssh_exec(host, argv, opts) end

---Run a command inside a service: `docker exec` in its container, or on its host for `process: true`.
---
---Gated as `ctx:exec`. docker's own failures become codes: `notfound` (no such container),
---`closed` (not running or paused), `refused` (no Docker daemon); the command's own failures
---stay in the result.
---
---Example:
---```lua
---local r = ctx:service_exec("dell/dovecot", { "doveadm", "user", ctx.args.addr })
---```
---@param service string "host/service" from the inventory
---@param argv string[]
---@param opts? ExecOpts
---@return ExecResult|nil result
---@return string|nil message
---@return ServiceCode|WriteCode|nil code
function Ctx:service_exec(service, argv, opts) end

---Start a command and read its output line by line while it runs.
---
---Gated as `ctx:exec`. `for line in lines do ... end`; `lines:close()` (idempotent, also
---`<close>`) ends it and returns `{status, signal, stderr, error, code}`. Lines longer than
---1 MiB are split.
---
---Example:
---```lua
---local lines = assert(ctx:exec_stream("ec2/postfix", { "tail", "-n", "100", "/var/log/mail.log" }))
---for line in lines do if line:find(addr, 1, true) then n = n + 1 end end
---lines:close()
---```
---@param target string "host" or "host/service"
---@param argv string[]
---@param opts? {timeout?: number, read_only?: boolean}
---@return Lines|nil lines
---@return string|nil message
---@return ServiceCode|WriteCode|nil code
function Ctx:exec_stream(target, argv, opts) end

---Disk usage of the filesystem holding `path` on a host or in a service (`df -P -k`).
---
---Example:
---```lua
---local d = ctx:df("dell/dovecot", "/var/mail/vmail")
---if d and d.use_pct > 90 then ... end
---```
---@param target string "host" or "host/service"
---@param path string
---@return DfResult|nil df
---@return string|nil message
---@return ServiceCode|nil code
function Ctx:df(target, path) end

---Owner, group, mode, type and size of `path` on a host or in a service (`stat -c`).
---
---`mode` is octal text ("0755"); `notfound` and `denied` come from stat's own error.
---
---Example:
---```lua
---local st, msg, code = ctx:stat("dell/dovecot", "/var/mail/vmail/example.jp")
---if code == "notfound" then ... end
---```
---@param target string "host" or "host/service"
---@param path string
---@return StatResult|nil stat
---@return string|nil message
---@return ServiceCode|nil code
function Ctx:stat(target, path) end

---Does `addr:port` accept a TCP connection when dialled FROM `from_host`?
---
---From an SSH host through the SSH server (a direct-tcpip channel; where forwarding is
---forbidden, the server's own bash `/dev/tcp`: `via = "exec"`); from a local host directly.
---`addr` must be an IP address for a local host.
---
---Example:
---```lua
---local ok, msg, code = ctx:tcp_check("ec2", "127.0.0.30", 2525)
---if code == "refused" then ... end
---```
---@param from_host string inventory host (or "local")
---@param addr string address to dial
---@param port integer 1..65535
---@param opts? {timeout?: number}
---@return TcpResult|nil result
---@return string|nil message
---@return HostCode|nil code
function Ctx:tcp_check(from_host, addr, port, opts) end

-- ---------------------------------------------------------------- local files (runbook.prim.file)

---Read a regular file on the machine runbook runs on (never blocks: a FIFO is `type`).
---
---Example:
---```lua
---local text, msg, code = ctx:read_file(ctx.inventory.mail.terraform_file)
---```
---@param path string
---@param max? integer bytes (default 16 MiB; a larger file is `cap`)
---@return string|nil content
---@return string|nil message
---@return "notfound"|"denied"|"type"|"io"|"cap"|"timeout"|nil code
function Ctx:read_file(path, max) end

---Owner, mode, type and size of a local path (stat(2), following symlinks).
---
---Unlike `ctx:stat`, `mode` is a number and `perms` the octal text.
---
---Example:
---```lua
---local st = ctx:file_stat("/var/log/runbook/audit.jsonl")
---```
---@param path string
---@return FileStat|nil stat
---@return string|nil message
---@return "notfound"|"denied"|"io"|"timeout"|nil code
function Ctx:file_stat(path) end

---Disk usage of the local filesystem holding `path` (statvfs(2)).
---
---Example:
---```lua
---local d = ctx:df_local("/var")
---```
---@param path string
---@return LocalDf|nil df
---@return string|nil message
---@return "notfound"|"denied"|"io"|"timeout"|nil code
function Ctx:df_local(path) end

---Replace a local file atomically (a temporary file, then rename). A WRITE.
---
---The dry run shows the current content and the new one.
---
---Example:
---```lua
---local ok, msg, code = ctx:write_file("/tmp/x.conf", "a = 1\n", tonumber("600", 8))
---```
---@param path string
---@param content string
---@param mode? integer permission bits (default 0644)
---@return true|nil ok
---@return string|nil message
---@return "notfound"|"denied"|"io"|"timeout"|WriteCode|nil code
function Ctx:write_file(path, content, mode) end

-- ---------------------------------------------------------------- Dovecot (runbook.prim.dovecot)

---Read Dovecot settings of a service (`doveconf NAME...`).
---
---A section (`plugin`) is present as "" and its settings as "section/name". An unknown setting
---is `notfound`.
---
---Example:
---```lua
---local c = ctx:doveconf("dell/dovecot", { "recipient_delimiter", "plugin" })
---local max = c and c["plugin/quota_max_mail_size"]
---```
---@param service string "host/service"
---@param names string[] setting or section names
---@param opts? {timeout: number} seconds (default: the inventory's timeout)
---@return table<string, string>|nil settings name -> value
---@return string|nil message
---@return ServiceCode|nil code
function Ctx:doveconf(service, names, opts) end

---The userdb answer Dovecot will use for a user (`doveadm user USER`).
---
---Through its auth cache when one is configured. A user Dovecot does not know is
---`{found = false}`, not an error; a userdb that could not answer (exit 75) is `lookup`.
---
---Example:
---```lua
---local u = ctx:doveadm_user("dell/dovecot", "info@example.jp")
---if u and u.found then ctx:note("home " .. u.fields.home) end
---```
---@param service string "host/service"
---@param user string
---@param opts? {timeout: number} seconds (default: the inventory's timeout)
---@return {found: boolean, fields: table<string, string>|nil, text: string|nil}|nil user
---@return string|nil message
---@return ServiceCode|"lookup"|nil code
function Ctx:doveadm_user(service, user, opts) end

---Whether Dovecot's passdb knows a user (`doveadm auth lookup -f user USER`: never the hash).
---
---Only found/not found is kept: the passdb's fields (a password hash among them) are never
---returned or shown.
---
---Example:
---```lua
---local a = ctx:doveadm_auth("dell/dovecot", "info@example.jp")
---```
---@param service string "host/service"
---@param user string
---@param opts? {timeout: number} seconds (default: the inventory's timeout)
---@return {found: boolean, text: string}|nil result
---@return string|nil message
---@return ServiceCode|"lookup"|nil code
function Ctx:doveadm_auth(service, user, opts) end

---A user's quota (`doveadm quota get -u USER`): one row per quota root and type.
---
---Example:
---```lua
---for _, q in ipairs(ctx:doveadm_quota("dell/dovecot", "info@example.jp") or {}) do ctx:note(q.type .. " " .. q.value) end
---```
---@param service string "host/service"
---@param user string
---@param opts? {timeout: number} seconds (default: the inventory's timeout)
---@return {name: string, type: string, value: number|string, limit: number|string, percent: number|string}[]|nil rows
---@return string|nil message
---@return ServiceCode|"lookup"|nil code
function Ctx:doveadm_quota(service, user, opts) end

---A user's mailboxes (`doveadm mailbox list -u USER`).
---
---Only the subscribed ones with `{subscribed = true}` (`-s`): the folders a mail client shows.
---
---Example:
---```lua
---local subs = ctx:doveadm_mailboxes("dell/dovecot", "info@example.jp", { subscribed = true })
---```
---@param service string "host/service"
---@param user string
---@param opts? {subscribed: boolean, timeout: number} subscribed: only those (`-s`); timeout in seconds
---@return string[]|nil names
---@return string|nil message
---@return ServiceCode|"lookup"|nil code
function Ctx:doveadm_mailboxes(service, user, opts) end

---Every copy of a message in a user's mailboxes, found by its Message-ID header.
---
---One `doveadm fetch -u USER 'mailbox uid' mailbox '*' header message-id ID`. Reads only.
---
---Example:
---```lua
---local hits = ctx:doveadm_find("dell/dovecot", "info@example.jp", "<a1@example.org>")
---if hits and hits[1] then ctx:note("in " .. hits[1].mailbox) end
---```
---@param service string "host/service"
---@param user string
---@param message_id string
---@param opts? {timeout: number} seconds (default: the inventory's timeout)
---@return {mailbox: string, uid: integer|string}[]|nil copies
---@return string|nil message
---@return ServiceCode|"lookup"|nil code
function Ctx:doveadm_find(service, user, message_id, opts) end

-- ---------------------------------------------------------------- Postfix (runbook.prim.postfix)

---Read Postfix parameters of a service (`postconf NAME...`, or `postconf -n` with no names).
---
---With one name: its value and the value split into a list (whitespace and commas). With a
---list of names, or none (every non-default parameter): a map name -> value and a map name ->
---list. An unknown parameter is `notfound`.
---
---Example:
---```lua
---local value, list = ctx:postconf("ec2/postfix", "relay_domains")
---local map = ctx:postconf("ec2/postfix", { "relay_domains", "relay_transport" })
---local x = ctx:postconf("ec2/postfix", { "virtual_alias_domains" }, { expand = true })  -- postconf -x
---```
---@param service string "host/service"
---@param names? string|string[] parameter name(s); nil for `postconf -n`
---@param opts? {expand: boolean} expand = true: `$name` references expanded (`postconf -x`)
---@return string|table<string, string>|nil value the value, or name -> value
---@return string[]|table<string, string[]>|string|nil list the list form; the message on failure
---@return ServiceCode|nil code
function Ctx:postconf(service, names, opts) end

---Look keys up in one Postfix lookup table with Postfix itself (`postmap -q - TYPE:TABLE`).
---
---One command for every key, on its standard input (map types and case folding are Postfix's
---own).
---
---The result maps each key to its value, or false when the table does not hold it. A table that
---postmap cannot open or query (a missing .db, a database that does not answer) is `lookup`:
---never "not found".
---
---Example:
---```lua
---local a = ctx:postmap("ec2/postfix", "hash:/etc/postfix/virtual", { "info@example.jp", "@example.jp" })
---if a and a["@example.jp"] then ctx:note("catch-all: " .. a["@example.jp"]) end
---```
---@param service string "host/service"
---@param map string "type:table"
---@param keys string[] keys without blanks
---@param opts? {timeout: number} seconds (default: the inventory's timeout)
---@return table<string, string|false>|nil answers key -> value | false
---@return string|nil message
---@return ServiceCode|"lookup"|nil code
function Ctx:postmap(service, map, keys, opts) end

---Set a Postfix parameter: `postconf -e`, `postfix reload`, re-read. A WRITE.
---
---The dry run shows the current value, the new one and the exact command. With --apply the
---value is read back after the reload; a different value is `io`.
---
---Example:
---```lua
---local r, msg, code = ctx:postconf_set("ec2/postfix", "relay_domains", "example.jp")
---```
---@param service string "host/service"
---@param name string parameter name
---@param value string single line
---@return {name: string, value: string, before: string, reloaded: boolean}|nil result
---@return string|nil message
---@return ServiceCode|WriteCode|nil code
function Ctx:postconf_set(service, name, value) end

---The messages in a service's Postfix queues (`postqueue -j`).
---
---Example:
---```lua
---for _, m in ipairs(ctx:postqueue("ec2/postfix") or {}) do
---  for _, r in ipairs(m.recipients) do ctx:note(r.address .. ": " .. (r.delay_reason or "")) end
---end
---```
---@param service string "host/service"
---@return QueueEntry[]|nil queue
---@return string|nil message
---@return ServiceCode|nil code
function Ctx:postqueue(service) end

---Ask Postfix to deliver queued mail now: one message (`postqueue -i ID`) or all (`-f`). A WRITE.
---
---Example:
---```lua
---local ok, msg, code = ctx:postqueue_flush("ec2/postfix", "4F9D32A1B")
---```
---@param service string "host/service"
---@param queue_id? string one queue id; nil flushes the whole queue
---@return true|nil ok
---@return string|nil message
---@return ServiceCode|WriteCode|nil code
function Ctx:postqueue_flush(service, queue_id) end

-- ---------------------------------------------------------------- SQL (runbook.prim.sql)

---Run a read (SELECT, SHOW, DESCRIBE, EXPLAIN, WITH) on an inventory database; `?` binds params.
---
---Anything else raises (use `ctx:sql_write`); the decision is made on tokens after removing
---comments and literals, and the session is READ ONLY at the server. Integers are Lua integers,
---DECIMAL exact strings, NULL is `ctx:sql_null()`. At most 10000 rows (`truncated`). The
---password's file or variable can fail too (`auth`, `notfound`, `denied`, `type`, `short`).
---
---Example:
---```lua
---local r, msg, code = ctx:sql("mail", "SELECT enabled FROM users WHERE email = ?", ctx.args.addr)
---if not r then ctx:note("database: " .. code) return end   -- could not ask: unknown, not "no"
---if not r.rows[1] then ... end
---```
---@param db string a database name under `databases:`
---@param query string
---@param ... SqlValue bound to the `?` in order
---@return SqlResult|nil result
---@return string|nil message
---@return "auth"|"refused"|"timeout"|"unreachable"|"tls"|"sql"|"closed"|SecretCode|nil code
function Ctx:sql(db, query, ...) end

---Run a write statement through the dry-run gate. A WRITE.
---
---`opts.before = {query, params}` is a read showing the rows the write touches: read in a dry
---run too, and re-read after applying (the journal gets both). `opts.secret = {i, ...}` masks
---those params; `opts.target` says what changes (default "DB: VERB table").
---
---Example:
---```lua
---local r, msg, code = ctx:sql_write("mail", "UPDATE users SET enabled = 1 WHERE email = ?",
---  { addr }, { before = { "SELECT email, enabled FROM users WHERE email = ?", { addr } } })
---```
---@param db string
---@param query string
---@param params? SqlValue[]
---@param opts? {before?: (string|SqlValue[])[], secret?: integer[], target?: string} before = {query, params}
---@return SqlWriteResult|nil result
---@return string|nil message
---@return "auth"|"refused"|"timeout"|"unreachable"|"tls"|"sql"|"closed"|SecretCode|WriteCode|nil code
function Ctx:sql_write(db, query, params, opts) end

---The SQL NULL value: bind it as a param, compare row values with it (distinct from "" and nil).
---
---Example:
---```lua
---if row.deleted_at == ctx:sql_null() then ... end
---```
---@return userdata null
function Ctx:sql_null() end

-- ---------------------------------------------------------------- HTTP (runbook.prim.http)

---Call an inventory HTTP API; GET, HEAD, OPTIONS are reads, POST, PUT, PATCH, DELETE are WRITES.
---
---`path` is "/api/users" or a list of segments, each percent-encoded. `body` is sent as JSON.
---A 4xx/5xx is `nil, "HTTP 404: ...", "http", response`: the 4th value tells 404 from 409.
---Fields named like password, token or secret are masked in every output. Redirects are not
---followed. `opts.before` is a path read before a write and again after it.
---
---Example:
---```lua
---local r, msg, code, resp = ctx:http("usermgmt", "GET", { "api", "users", addr })
---if code == "http" and resp.status == 404 then ... end
---```
---@param endpoint string a name under `http:`
---@param method "GET"|"HEAD"|"OPTIONS"|"POST"|"PUT"|"PATCH"|"DELETE"
---@param path string|string[]
---@param body? table
---@param opts? {timeout?: number, query?: table<string, string|number|boolean>, max_body?: integer, before?: string|string[], target?: string}
---@return HttpResponse|nil response
---@return string|nil message
---@return "refused"|"timeout"|"unreachable"|"tls"|"http"|"cap"|SecretCode|WriteCode|nil code
---@return HttpResponse|nil failed the response of a 4xx/5xx (with code "http")
function Ctx:http(endpoint, method, path, body, opts) end

---Percent-encode a string (for building a query string by hand).
---
---Example:
---```lua
---local q = "?email=" .. ctx:url_escape(addr)
---```
---@param s string|number
---@return string escaped
function Ctx:url_escape(s) end

-- ---------------------------------------------------------------- Docker (runbook.prim.docker)

---Read a container's log: stream it, or scan a window with `grep`.
---
---`since`/`until`: a duration before now ("30m", "1h"), epoch seconds or RFC 3339. `grep`: a
---string, a list (plain text, case-insensitive, any of them) or a function(rec) -> bool: the
---whole window is scanned inside the call and at most `max` (10000) matches kept. Without grep
---records stream lazily; a failure midway is `logs:err()`. Through the Engine API (local hosts,
---and SSH hosts whose sshd allows the stream-local channel) stdout and stderr stay apart; through
---the docker CLI fallback over SSH they arrive merged (`stream = "merged"`).
---
---Example:
---```lua
---local logs = assert(ctx:docker_logs("ec2/postfix", { since = "1h", grep = ctx.args.addr }))
---for rec in logs do ctx:note(rec.ts .. " " .. rec.line) end
---```
---@param service string "host/service"
---@param opts? DockerLogsOpts
---@return Logs|nil logs
---@return string|nil message
---@return ServiceCode|nil code
function Ctx:docker_logs(service, opts) end

---A container's state (`docker inspect`): running, status, exit code, restarts, health.
---
---Example:
---```lua
---local st, msg, code = ctx:container_state("dell/dovecot")
---if st and not st.running then ... end
---```
---@param service string "host/service"
---@return ContainerState|nil state
---@return string|nil message
---@return ServiceCode|nil code
function Ctx:container_state(service) end

---Restart a service's container and wait until it runs again. A WRITE.
---
---The dry run shows `docker restart CONTAINER on HOST` and the current state. With --apply it
---waits until the container runs with a new StartedAt (`timeout` otherwise) and returns the new
---state.
---
---Example:
---```lua
---local st, msg, code = ctx:container_restart("dell/dovecot", { grace = 10 })
---```
---@param service string "host/service"
---@param opts? {grace?: number, timeout?: number} seconds before KILL (10); wait at most (60)
---@return ContainerState|nil state
---@return string|nil message
---@return ServiceCode|WriteCode|nil code
function Ctx:container_restart(service, opts) end

---Start a service's stopped container and wait until it runs. A WRITE.
---
---Example:
---```lua
---local st = ctx:container_start("dell/mariadb")
---```
---@param service string "host/service"
---@param opts? {grace?: number, timeout?: number}
---@return ContainerState|nil state
---@return string|nil message
---@return ServiceCode|WriteCode|nil code
function Ctx:container_start(service, opts) end

-- ---------------------------------------------------------------- DNS (runbook.prim.dns)

---Query DNS against the inventory's server (`dns:`), never the system resolver in the lab.
---
---A name with no record of the type is a result with `nodata = true`, not a failure; a name
---that does not exist is `nxdomain`. `type` "PTR" turns an IP into its arpa name.
---
---Example:
---```lua
---local r, msg, code = ctx:dig("example.jp", "MX")
---if code == "nxdomain" or (r and r.nodata) then ... end
---```
---@param name string
---@param type? "A"|"AAAA"|"MX"|"TXT"|"PTR"|"CNAME"|"NS"|"SOA" default "A"
---@param opts? {server?: string, port?: integer, timeout?: number, tcp?: boolean, retries?: integer}
---@return DnsResult|nil result
---@return string|nil message
---@return DnsCode|nil code
function Ctx:dig(name, type, opts) end

---The A records of a name (through `ctx:dig`); no A record is `nodata`.
---
---Example:
---```lua
---local ips, msg, code = ctx:dig_addresses("mx.example.jp")
---```
---@param name string
---@param opts? {server?: string, port?: integer, timeout?: number, tcp?: boolean, retries?: integer}
---@return string[]|nil addresses
---@return string|nil message
---@return DnsCode|"nodata"|nil code
function Ctx:dig_addresses(name, opts) end

-- ---------------------------------------------------------------- SMTP/LMTP (runbook.prim.smtp)

---Hold an SMTP or LMTP dialogue with a server, stopping at a chosen stage; the transcript is traced.
---
---A server's negative reply (554 relay denied, 550 unknown user) is an answer: the call
---succeeds with `ok = false` and the stage's code. Stopping at or before "rcpt" (the default)
---is a read; `stop = "data"` delivers a real message and is a WRITE (without --apply the dry run
---shows the exact envelope and headers). `host` may be an inventory host, an IP or a DNS name
---(resolved with `ctx:dig`, so its DNS codes can come back).
---
---Example:
---```lua
---local r, msg, code = ctx:smtp_probe { host = "ec2", from = "sender@outside.test", rcpt = addr }
---if r and not r.ok then ctx:note("refused at " .. r.last_stage) end
---```
---@param opts {host: string, port?: integer, lmtp?: boolean, helo?: string, from?: string, rcpt?: string|string[], stop?: "connect"|"helo"|"mail"|"rcpt"|"data", starttls?: "auto"|"required"|"never", tls_verify?: boolean, tls_name?: string, tls_ca?: string, bind?: string, timeout?: number, message?: string, subject?: string, probe_id?: string}
---@return SmtpResult|nil result
---@return string|nil message
---@return "refused"|"timeout"|"unreachable"|"protocol"|"tls"|"io"|DnsCode|"nodata"|WriteCode|nil code
function Ctx:smtp_probe(opts) end

---Does `addr:port` accept a TCP connection from this machine (optionally bound to a local IP)?
---
---Example:
---```lua
---local r, msg, code = ctx:tcp_check_local("127.0.0.20", 25, { timeout = 3 })
---```
---@param addr string IP, inventory host or DNS name
---@param port integer
---@param opts? {bind?: string, timeout?: number}
---@return TcpResult|nil result
---@return string|nil message
---@return "refused"|"timeout"|"unreachable"|"io"|DnsCode|"nodata"|nil code
function Ctx:tcp_check_local(addr, port, opts) end
