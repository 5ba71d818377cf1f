-- runbooks/maildir-fix.lua: the cheat sheet's "Maildir permissions" remedy: give a domain's
-- Maildir back to the mail user inside the Dovecot container, and owner rwx where it is missing.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local SHOW = 10   -- wrong entries listed in the output

return {
  description = "Give a domain's Maildir back to the mail user (chown -R vmail:vmail; owner rwx on directories)",
  kind = "remedy",
  help = [[
What it does: inside the Dovecot container (inventory mail.mailserver_host + "/dovecot") it
shows the owner and mode of <maildir_root>/<domain>/ (and of the user's Maildir with --addr),
then lists every entry below it that is not owned by the mail user (inventory
mail.maildir_owner, default vmail; "user:group" also accepted), and every directory without
owner rwx or file without owner read (Dovecot keeps some files read-only on purpose, e.g.
dovecot-uidvalidity.*: those are left alone). Dovecot then logs "Permission denied (... missing +x perm
...)" and Postfix defers with 451 4.3.0 / 4.2.0. Nothing wrong: nothing to do (exit 0).
What it changes: `chown -R -P -h vmail:vmail -- <maildir_root>/<domain>` (the document's
command, without following any symlink) when an owner is wrong, and, only when a mode lacks the
owner's bits, `chmod u+rwx` on those directories and `chmod u+r` on those files (one find -P
... -exec). Group and other bits are left as they are. A symlink anywhere in the path (the
Maildir root, the domain's directory) is refused: nothing is changed. Without --apply it only
prints the commands.
How to verify: after --apply it lists again and expects nothing wrong; deferred mail is then
delivered at the next queue run (or flush it: runbook run queue-flush --service ...).]],
  args = {
    { name = "domain", type = "domain", required = true, help = "the domain whose Maildir to fix, e.g. example.jp" },
    { name = "addr", type = "email", help = "also show and verify this user's own Maildir" },
  },
  needs = { services = { "@mailserver/dovecot" } },   -- the mail server's Dovecot container (mail.mailserver_host)
  examples = {
    "runbook run maildir-fix --domain example.jp",
    "runbook run maildir-fix --domain example.jp --addr info@example.jp --apply",
  },

  run = function(ctx)
    local domain = ctx.args.domain
    local svc = ops.need_service(ctx, ops.dovecot(ctx))
    local owner, group = ops.maildir_owner(ctx):match("^([^:]+):?(.*)$")
    if group == "" then group = owner end
    local root = ops.maildir_root(ctx):gsub("/+$", "")
    -- no trailing slash: "dir/" makes chown and find follow a symlinked domain directory
    local dir = ("%s/%s"):format(root, domain)
    local user_dir
    if ctx.args.addr then
      local l, d = ctx.args.addr:match("^(.-)@(.+)$")
      if d:lower() ~= domain then
        ctx:verdict { status = "problem", cause = "usage", message = ("--addr %s is not in --domain %s"):format(ctx.args.addr, domain) }
        return
      end
      user_dir = ("%s/%s"):format(dir, l:lower())
    end

    local function show(path)
      local st, msg, code = ctx:stat(svc, path)
      if not st then
        ctx:note(("%s: %s"):format(path, code == "notfound" and "does not exist" or tostring(msg)))
        return nil, code
      end
      ctx:note(("%s: owner %s:%s mode %s"):format(path, st.owner, st.group, st.mode))
      return st
    end

    -- wrong() -> list of {owner=, mode=, type=, path=, bad_owner=, bad_mode=}
    local function wrong()
      local r, msg, code = ctx:service_exec(svc, {
        "find", "-P", dir, "(", "!", "-user", owner, "-o", "!", "-group", group,
        "-o", "-type", "d", "!", "-perm", "-u=rwx", "-o", "-type", "f", "!", "-perm", "-u=r", ")",
        "-printf", "%u:%g %m %y %p\\n" })   -- a read: runbook.gate lists find without -exec/-delete
      r = ops.must(r, msg, code, "find in " .. svc)
      if r.status ~= 0 and r.stdout == "" then
        error(("find %s in %s: %s"):format(dir, svc, (r.stderr or ""):gsub("%s+$", "")), 0)
      end
      local out = {}
      for line in r.stdout:gmatch("[^\n]+") do
        local og, mode, ty, path = line:match("^(%S+) (%d+) (%a) (.+)$")
        if og then
          local m = tonumber(mode, 8) or 0
          local o = m >> 6
          out[#out + 1] = { owner = og, mode = mode, type = ty, path = path,
                            bad_owner = og ~= owner .. ":" .. group,
                            bad_mode = (ty == "d" and o ~= 7) or (ty == "f" and o & 4 == 0) }
        end
      end
      return out
    end

    -- symlinks() -> list of the path's components (root down to the domain directory and the
    -- user's Maildir) that are symbolic links. stat without -L never follows the last one.
    local function symlinks()
      local comps, p = {}, ""
      for part in (user_dir or dir):gmatch("[^/]+") do
        p = p .. "/" .. part
        comps[#comps + 1] = p
      end
      local argv = { "stat", "-c", "%F|%n", "--" }
      for _, c in ipairs(comps) do argv[#argv + 1] = c end
      local r, msg, code = ctx:service_exec(svc, argv)
      r = ops.must(r, msg, code, "stat of the Maildir path in " .. svc)
      local links = {}
      for line in r.stdout:gmatch("[^\n]+") do
        local ty, name = line:match("^([^|]*)|(.*)$")
        if ty == "symbolic link" then links[#links + 1] = name end
      end
      return links
    end

    local state = ctx:step("check", function()
      local links = symlinks()
      if #links > 0 then return { links = links } end
      local st, code = show(dir)
      if user_dir then show(user_dir) end
      if not st then return { missing = code == "notfound" } end
      local list = wrong()
      local n_owner, n_mode = 0, 0
      for i, e in ipairs(list) do
        if e.bad_owner then n_owner = n_owner + 1 end
        if e.bad_mode then n_mode = n_mode + 1 end
        if i <= SHOW then ctx:note(("  wrong: %s %s %s"):format(e.owner, e.mode, e.path)) end
      end
      if #list > SHOW then ctx:note(("  ... and %d more"):format(#list - SHOW)) end
      return { list = list, n_owner = n_owner, n_mode = n_mode, dir_stat = st }
    end, "owner and modes of the domain's Maildir (document 4: ls -la of the Maildir)")
    if not state then return end
    if state.links then
      ctx:finding { severity = "fail", cause = "maildir_symlink", hop = svc,
                    message = ("symbolic link in the Maildir path: %s; refusing to change owners through it"):format(
                      table.concat(state.links, ", ")),
                    evidence = { { host = ops.ms(ctx), source = "stat " .. state.links[1], text = "symbolic link" } } }
      ctx:verdict { status = "problem", cause = "maildir_symlink",
                    message = ("%s is reached through a symbolic link (%s): fix it by hand; nothing was changed"):format(
                      dir, state.links[1]) }
      return
    end
    if state.missing then
      ctx:verdict { status = "healthy", message = ("%s does not exist yet: Dovecot creates it at the first delivery; nothing to fix"):format(dir) }
      return
    end
    if #state.list == 0 then
      return remedy.nothing_to_do(ctx, ("everything under %s is owned by %s:%s with owner rwx: nothing to do"):format(dir, owner, group))
    end

    return remedy.change(ctx, {
      step = "fix", title = "chown -R (and chmod where the owner lacks its bits) inside the Dovecot container",
      finding = { severity = "warn", cause = "maildir_permissions", hop = svc,
                  message = ("%d entr%s under %s: %d with the wrong owner, %d without owner rwx"):format(#state.list,
                    #state.list == 1 and "y" or "ies", dir, state.n_owner, state.n_mode),
                  evidence = { { host = ops.ms(ctx), source = "find " .. dir,
                                 text = ("%s %s %s"):format(state.list[1].owner, state.list[1].mode, state.list[1].path) } } },
      writes = function(written)            -- each change shown right before its command
        local result = "applied"
        if state.n_owner > 0 then
          local ds = state.dir_stat
          ctx:note(("owner of %s: %s:%s -> %s:%s"):format(dir, ds.owner, ds.group, owner, group))
          local r, msg, code = ctx:service_exec(svc, { "chown", "-R", "-P", "-h", owner .. ":" .. group, "--", dir })
          if r and r.status ~= 0 then r, msg, code = nil, (r.stderr or ""):gsub("%s+$", ""), "io" end
          result = written(r, msg, code, "owner of " .. dir)
          if result ~= "applied" and result ~= "dryrun" then return result end
        end
        if state.n_mode > 0 then
          ctx:note(("modes under %s: directories -> owner rwx, files -> owner r"):format(dir))
          local r, msg, code = ctx:service_exec(svc, { "find", "-P", dir,
            "(", "-type", "d", "!", "-perm", "-u=rwx", "-exec", "chmod", "u+rwx", "{}", "+", ")", "-o",
            "(", "-type", "f", "!", "-perm", "-u=r", "-exec", "chmod", "u+r", "{}", "+", ")" })
          if r and r.status ~= 0 then r, msg, code = nil, (r.stderr or ""):gsub("%s+$", ""), "io" end
          local res2 = written(r, msg, code, "modes of " .. dir)
          if res2 ~= "applied" then result = res2 end
        end
        return result
      end,
      dry = { cause = "maildir_permissions", message = ("%s has wrong owners or modes"):format(dir) },
      verify_title = "list again: nothing may be left",
      verify = function()
        show(dir)
        if user_dir then show(user_dir) end
        local left = wrong()
        if #left > 0 then
          return { fixed = false, hop = svc, message = ("%s still has wrong owners or modes"):format(dir),
                   why = ("%d entr%s still wrong, e.g. %s %s %s"):format(#left, #left == 1 and "y" or "ies",
                     left[1].owner, left[1].mode, left[1].path) }
        end
        return { fixed = true, message = ("%s is owned by %s:%s with owner rwx again"):format(dir, owner, group) }
      end,
    })
  end,
}
