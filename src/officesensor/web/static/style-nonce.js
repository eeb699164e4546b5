// Lets BokehJS's styles through a Content-Security-Policy without 'unsafe-inline'.
// BokehJS 3 writes its CSS into <style> elements it creates at run time (in each chart
// component's shadow root); a strict style-src blocks those unless they carry the page's
// nonce. This script is loaded first, with that nonce, and stamps it on every <style>
// element a script creates. Markup injected into the page cannot run this (no script runs
// without the policy's consent), so an injected <style> stays blocked. See web/security.py.
(function () {
  "use strict";
  var script = document.currentScript;
  var nonce = script && script.nonce;
  if (!nonce) { return; }
  var create = Document.prototype.createElement;
  Document.prototype.createElement = function (tagName, options) {
    var element = create.call(this, tagName, options);
    if (String(tagName).toLowerCase() === "style") { element.setAttribute("nonce", nonce); }
    return element;
  };
})();
