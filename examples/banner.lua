-- examples/banner.lua: the smallest complete runbook. It checks that a file holds an exact
-- line (say, the maintenance banner your MTA's smtpd_banner includes) and fixes it when not.
-- Run it to see step tracing, a dry-run "would" record with before -> after, and --apply:
--   runbook run examples/banner.lua --path /tmp/banner.txt --text "maintenance at 22:00"
--   runbook run examples/banner.lua --path /tmp/banner.txt --text "maintenance at 22:00" --apply --yes -i examples/local.yaml
return {
  description = "Make a file hold exactly one line of text (an example of check + gated fix)",
  kind = "remedy",
  help = [[
Reads PATH; when it already holds TEXT the run is clean (exit 0). Otherwise it records a
finding and writes the file through the dry-run gate: without --apply it only shows what it
would write (exit 1); with --apply it writes, re-reads and journals the change.]],
  args = {
    { name = "path", type = "path", required = true, help = "file to check and fix" },
    { name = "text", type = "string", required = true, help = "the line the file must hold" },
  },
  run = function(ctx)
    local want = ctx.args.text .. "\n"
    local current = ctx:step("read", function()
      local body, msg, code = ctx:read_file(ctx.args.path)
      if body == nil and code ~= "notfound" then error(msg) end
      return body
    end, "read the current content")
    if current == want then
      ctx:verdict { status = "healthy", message = ctx.args.path .. " already holds the text" }
      return
    end
    ctx:step("fix", function()
      ctx:finding { severity = "warn", cause = "content_differs", hop = "local",
                    message = ("%s does not hold the expected line"):format(ctx.args.path),
                    evidence = { { host = "local", source = ctx.args.path, text = current or "(no file)" } } }
      local ok, msg, code = ctx:write_file(ctx.args.path, want)
      if not ok and code ~= "dryrun" then error(msg) end
    end, "write the expected content")
  end,
}
