/*
 * The Echo page: text typed into the box is sent to the "echo" application and every reply
 * is shown at the top of the output, newest first. Controls work only while connected.
 * Needs thywill.js loaded first; no inline script, so a strict Content-Security-Policy works.
 */
(function () {
  'use strict';

  var APPLICATION_ID = 'echo';
  var STATUS_TEXT = {
    connecting: 'Connecting...',
    connected: 'Connected',
    disconnected: 'Disconnected'
  };

  /** The echo application's interface, driving the page through its hooks. */
  class EchoInterface extends Thywill.ApplicationInterface {
    constructor(ui) {
      super(APPLICATION_ID);
      this.ui = ui;
    }

    connecting() {
      // "Connecting..." only until the first failure or loss; after that the page says
      // "Disconnected" until it is connected again (retries happen in the background).
      if (this.ui.status.className !== 'disconnected') {
        this.showStatus('connecting');
      }
    }

    connected() {
      this.showStatus('connected');
      this.ui.wrapper.classList.add('enabled');
      this.ui.textarea.disabled = false;
      this.ui.button.disabled = false;
    }

    disconnected() {
      this.showStatus('disconnected');
      this.disable();
    }

    connectionFailure() {
      this.showStatus('disconnected');
      this.disable();
    }

    received(message) {
      var div = document.createElement('div');
      div.className = 'echoed-message';
      div.textContent = typeof message.data === 'string' ? message.data : JSON.stringify(message.data);
      this.ui.output.insertBefore(div, this.ui.output.firstChild);
    }

    /** Sends the box's text, if any, and clears the box. */
    sendText() {
      var text = this.ui.textarea.value;
      if (!Thywill.isConnected || text === '') {
        return;
      }
      this.send(text);
      this.ui.textarea.value = '';
      this.ui.textarea.focus();
    }

    disable() {
      this.ui.wrapper.classList.remove('enabled');
      this.ui.textarea.value = '';
      this.ui.textarea.disabled = true;
      this.ui.button.disabled = true;
    }

    showStatus(state) {
      this.ui.status.className = state;
      this.ui.status.textContent = STATUS_TEXT[state];
    }
  }

  function start() {
    var ui = {
      wrapper: document.getElementById('echo-wrapper'),
      status: document.getElementById('status'),
      textarea: document.querySelector('#sender textarea'),
      button: document.querySelector('#sender button'),
      output: document.getElementById('echo-output')
    };
    var echo = new EchoInterface(ui);
    ui.button.addEventListener('click', function () {
      echo.sendText();
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
