/*
 * Tabular: the page's application script. It runs before Alpine.js (lower weight in the
 * bundle), mounts the main view from its inlined client template and registers the Alpine
 * store the view binds to; the store talks to the server through a Thywill
 * ApplicationInterface.
 */
(function () {
  'use strict';

  var APP_ID = 'tabular';
  /** Rows kept on the page; older ones are dropped. */
  var MAX_ROWS = 100;

  function mountView() {
    var view = document.getElementById('tabular-view');
    var template = document.getElementById('tabular-template-main');
    if (view && template && !view.firstElementChild) {
      view.innerHTML = template.textContent;
    }
  }

  document.addEventListener('alpine:init', function () {
    mountView();
    var app = new Thywill.ApplicationInterface(APP_ID);
    var nextRowId = 1;

    window.Alpine.store('tabular', {
      rows: [],
      running: false,
      connected: false,
      status: 'Connecting...',
      state: 'connecting',
      get canStart() {
        return this.connected && !this.running;
      },
      get canStop() {
        return this.connected && this.running;
      },
      /** Column sums over the rows on the page (used by the totals feature). */
      get totals() {
        var sums = [0, 0, 0, 0, 0];
        this.rows.forEach(function (row) {
          row.values.forEach(function (v, i) {
            sums[i] += v;
          });
        });
        return sums;
      },
      start: function () {
        if (this.canStart) {
          this.running = true;
          app.send('start');
        }
      },
      stop: function () {
        if (this.canStop) {
          this.running = false;
          app.send('stop');
        }
      }
    });
    var store = window.Alpine.store('tabular');

    function show(state, text) {
      store.state = state;
      store.status = text;
    }

    app.on('connecting', function () {
      show('connecting', 'Connecting...');
    });
    app.on('connected', function () {
      store.connected = true;
      show('connected', 'Connected');
    });
    function lost() {
      // A disconnect ends the stream on the server: turn off the UI and the data.
      store.connected = false;
      store.running = false;
      show('disconnected', 'Disconnected');
    }
    app.on('disconnected', lost);
    app.on('connectionFailure', lost);
    app.on('received', function (message) {
      var values = message.data;
      if (!Array.isArray(values)) {
        return;
      }
      store.rows.unshift({ id: nextRowId++, values: values });
      if (store.rows.length > MAX_ROWS) {
        store.rows.splice(MAX_ROWS);
      }
    });

    window.tabularApplication = app;
  });
})();
