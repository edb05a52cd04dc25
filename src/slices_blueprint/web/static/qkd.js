// QKD network page: each eavesdropper slider and its number field show the same value.
document.querySelectorAll("input[data-mirrors]").forEach((slider) => {
  const field = document.getElementById(slider.dataset.mirrors);
  slider.addEventListener("input", () => { field.value = slider.value; });
  field.addEventListener("input", () => { slider.value = field.value; });
});
