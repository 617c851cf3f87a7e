// Copy a command to the clipboard; open the folded sections a link points into.
document.querySelectorAll("[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    var text = button.parentElement.querySelector("code").textContent;
    var done = function () { button.textContent = "copied"; };
    if (navigator.clipboard) {
      navigator.clipboard.writeText(text).then(done, function () { window.prompt("Copy:", text); });
    } else {
      window.prompt("Copy:", text);
    }
  });
});
function openTarget() {
  var target = location.hash && document.getElementById(location.hash.slice(1));
  for (var node = target; node; node = node.parentElement) {
    if (node.tagName === "DETAILS") { node.open = true; }
  }
  if (target) { target.scrollIntoView(); }
}
window.addEventListener("hashchange", openTarget);
openTarget();
