/*
 * The Calculations page. Each row sends the number typed into it to a server function by
 * RPC and shows the result. Keystrokes are debounced (200 ms), and a reply is shown only if
 * it answers the latest value sent from its row, so replies arriving out of order never
 * overwrite a newer result.
 */
(function () {
  'use strict';

  var APP_ID = 'calculations';
  var DEBOUNCE_MS = 200;

  /** Row id -> server function. */
  var FUNCTIONS = {
    multiplyByTwo: 'multiplicative.multiplyByTwo',
    divideByTwo: 'multiplicative.divideByTwo',
    square: 'powers.square',
    squareRoot: 'powers.squareRoot'
  };

  /** The original's texts for RPC error codes; other errors show their own message. */
  var ERROR_TEXTS = {
    dc: 'Not connected.',
    nf: 'Missing server function.',
    np: 'Access forbidden.',
    to: 'Timed out.'
  };
  var INVALID = 'Invalid calculation.';

  var statusElement = document.getElementById('status');
  var rows = Object.keys(FUNCTIONS).map(function (id) {
    var li = document.getElementById(id);
    return {
      id: id,
      fn: FUNCTIONS[id],
      input: li.querySelector('input'),
      result: li.querySelector('.result'),
      timer: null,
      latest: 0 // number of the latest value sent; replies to older ones are dropped
    };
  });

  /** Integers without decimals; other numbers with at most four, trailing zeros stripped. */
  function formatNumber(n) {
    if (n % 1 === 0) {
      return n.toFixed(0);
    }
    return n.toFixed(4).replace(/\.?0+$/, '');
  }

  function showResult(row, text, isError) {
    row.result.textContent = text;
    row.result.classList.toggle('result-error', Boolean(isError));
  }

  function showValue(row, value) {
    if (value === null || (typeof value === 'number' && !isFinite(value))) {
      // NaN and Infinity travel through JSON as null.
      showResult(row, INVALID, true);
    } else if (typeof value === 'number') {
      showResult(row, formatNumber(value), false);
    } else {
      showResult(row, String(value), false);
    }
  }

  function showError(row, error) {
    var code = error && error.code;
    showResult(row, ERROR_TEXTS[code] || (error && error.message) || String(code || error), true);
  }

  function calculate(app, row) {
    var text = row.input.value.trim();
    var sent = ++row.latest;
    if (text === '') {
      showResult(row, '', false);
      return;
    }
    var x = parseFloat(text);
    if (!isFinite(x)) {
      showResult(row, INVALID, true);
      return;
    }
    app.rpc(row.fn, [x]).then(
      function (result) {
        if (sent === row.latest) {
          showValue(row, result);
        }
      },
      function (error) {
        if (sent === row.latest) {
          showError(row, error);
        }
      }
    );
  }

  function setStatus(text, className) {
    statusElement.textContent = '[ ' + text + ' ]';
    statusElement.className = className;
  }

  function setEnabled(enabled) {
    rows.forEach(function (row) {
      row.input.disabled = !enabled;
      row.input.classList.toggle('enabled', enabled);
      if (!enabled && row.timer !== null) {
        clearTimeout(row.timer);
        row.timer = null;
      }
    });
  }

  class CalculationsApplication extends Thywill.ApplicationInterface {
    constructor() {
      super(APP_ID);
      var self = this;
      rows.forEach(function (row) {
        row.input.addEventListener('input', function () {
          if (row.timer !== null) {
            clearTimeout(row.timer);
          }
          row.timer = setTimeout(function () {
            row.timer = null;
            calculate(self, row);
          }, DEBOUNCE_MS);
        });
      });
    }

    received() {
      // This application only uses RPC: no other messages arrive.
    }

    connecting() {
      setStatus('Connecting...', 'connecting');
    }

    connected() {
      setStatus('Connected', 'connected');
      setEnabled(true);
    }

    disconnected() {
      setStatus('Disconnected', 'disconnected');
      setEnabled(false);
    }

    connectionFailure() {
      setStatus('Disconnected', 'disconnected');
      setEnabled(false);
    }
  }

  // Exposed for the browser tests and for trying calls from the console.
  window.calculations = new CalculationsApplication();
})();
