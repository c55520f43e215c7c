// Preloaded into the test server (scripts/test-server.sh: node --require).
//
// pouchdb-server 4.2.0 lets some bad requests throw outside any handler, which ends the
// whole process, and with it every test running concurrently against it. Known cases:
//   - PUT /{db} by anyone but an admin: TypeError "db.info is not a function"
//     (express-pouchdb lib/routes/db.js);
//   - GET /{db}/_changes?filter=_selector: an unhandled rejection (not_found
//     _design/_selector; this server has no _selector filter);
//   - POST /{db}/_bulk_get?latest=true naming a revision the db lacks: "Unable to resolve
//     latest revision" (pouchdb-merge).
// Here such an error is written to the server's log and the server keeps serving. The
// request that caused it gets no answer, so the test that sent it still fails (by its
// client's read timeout) and the log names the cause.
'use strict';
function report(kind) {
  return function (err) {
    const text = err && err.stack ? err.stack : JSON.stringify(err);
    console.error('[settee test server] ' + kind + ' kept the server alive: ' + text);
  };
}
process.on('uncaughtException', report('uncaught exception'));
process.on('unhandledRejection', report('unhandled rejection'));
