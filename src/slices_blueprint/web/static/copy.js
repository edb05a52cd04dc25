// "Copy" buttons: <button data-copy="ID"> puts the text of the element ID on the clipboard.
// Where the page is not a secure context (plain http to another host) the clipboard is not
// offered: the text is selected instead, for Ctrl+C. Delegated, so it works in swapped fragments.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const label = button.dataset.label || (button.dataset.label = button.textContent);
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch {
    window.getSelection().selectAllChildren(source);
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => { button.textContent = label; }, 2000);
});
