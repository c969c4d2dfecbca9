/*
 * The totals feature, exposed by the server after a few rows (it is not in the page's
 * bootstrap set). It loads its own stylesheet and client template on demand, then shows the
 * column sums under the table; Alpine.js binds the inserted view to the page's store.
 */
(function () {
  'use strict';

  var base = Thywill.basePath;
  Promise.all([
    Thywill.loadStylesheet(base + '/css/totals.css'),
    Thywill.loadTemplate(base + '/tpl/totals.tpl')
  ]).then(function () {
    var host = document.querySelector('.tabular-wrapper .totals-host');
    var template = document.getElementById('tabular-template-totals');
    if (host && template && !host.firstElementChild) {
      host.innerHTML = template.textContent;
    }
  }, function (error) {
    console.warn('tabular: the totals feature could not be loaded', error);
  });
})();
