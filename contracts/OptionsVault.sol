// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {IOptionsVault} from "./interfaces/IOptionsVault.sol";
import {IERC20Minimal} from "./interfaces/IERC20Minimal.sol";
import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {SafeTransfer} from "./libraries/SafeTransfer.sol";

/// @title OptionsVault
/// @notice Holds quote collateral (USDC-like) and an underlying hedge (WETH-like) against a
/// book of European options written by governance. Keepers keep the net delta near the target
/// by swapping through an allowlisted router; every swap is bounded on chain by the oracle
/// price, a per-window notional cap and a deadline, whatever calldata the keeper sends.
/// @dev Interface and semantics: docs/interfaces.md. Pattern: checks, effects, interactions,
/// plus a reentrancy guard on every function that moves tokens.
contract OptionsVault is IOptionsVault {
    using SafeTransfer for address;

    // --- errors ------------------------------------------------------------------------

    error NotGovernance(address caller);
    error NotKeeper(address caller);
    error VaultPaused();
    error VaultNotPaused();
    error Reentrancy();
    error ZeroAddress();
    error DeadlineExpired(uint256 deadline, uint256 timestamp);
    error RouterNotAllowed(address router);
    error ZeroAmount();
    error AmountTooLarge(uint256 amountIn, uint256 max);
    error OracleCallFailed(address feed);
    error OracleNonPositive(int256 answer);
    error OracleAnswerTooLarge(int256 answer);
    error OracleStale(uint256 updatedAt, uint64 heartbeat, uint256 timestamp);
    error NotionalCapExceeded(uint256 used, uint256 requested, uint256 cap);
    error SwapFailed(bytes reason);
    error InsufficientOutput(uint256 received, uint256 required);
    error Overspent(uint256 spent, uint256 amountIn);
    error IndexOutOfRange(uint256 index, uint256 length);
    error InvalidOption();
    error InvalidParams(string field);
    error InvalidDecimals(uint8 decimals);

    event GovernanceTransferred(address indexed previous, address indexed next);
    event Deposited(address indexed token, address indexed from, uint256 amount);
    event Withdrawn(address indexed token, address indexed to, uint256 amount);

    // --- constants and immutables ------------------------------------------------------

    uint256 private constant BPS = 10_000;
    /// @dev Bounds that keep every product in the oracle valuation far from 2**256.
    uint256 private constant MAX_AMOUNT = type(uint96).max;
    uint256 private constant MAX_ANSWER = type(uint96).max;
    uint8 private constant MAX_DECIMALS = 18;
    uint8 private constant MAX_POLICY = 2;

    address public immutable override quote;
    address public immutable override underlying;
    address public immutable override feed;
    uint8 public immutable quoteDecimals;
    uint8 public immutable underlyingDecimals;
    uint8 public immutable oracleDecimals;

    // --- state ---------------------------------------------------------------------------

    address public override governance;
    mapping(address => bool) public override isKeeper;
    mapping(address => bool) public override isRouter;
    bool public paused;
    uint64 public requestNonce;
    uint64 public paramsVersion;
    uint64 public lastRebalanceAt;
    uint64 public windowStart;
    uint256 public windowNotionalUsed;

    VaultParams private _params;
    OptionLeg[] private _book;
    uint256 private _lock = 1;

    // --- modifiers -----------------------------------------------------------------------

    modifier onlyGovernance() {
        if (msg.sender != governance) revert NotGovernance(msg.sender);
        _;
    }

    modifier onlyKeeper() {
        if (!isKeeper[msg.sender]) revert NotKeeper(msg.sender);
        _;
    }

    modifier whenNotPaused() {
        if (paused) revert VaultPaused();
        _;
    }

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    constructor(address governance_, address quote_, address underlying_, address feed_, VaultParams memory params_) {
        if (governance_ == address(0) || quote_ == address(0) || underlying_ == address(0) || feed_ == address(0)) {
            revert ZeroAddress();
        }
        governance = governance_;
        quote = quote_;
        underlying = underlying_;
        feed = feed_;
        quoteDecimals = _checkedDecimals(IERC20Minimal(quote_).decimals());
        underlyingDecimals = _checkedDecimals(IERC20Minimal(underlying_).decimals());
        oracleDecimals = _checkedDecimals(AggregatorV3Interface(feed_).decimals());
        _setParams(params_);
        emit GovernanceTransferred(address(0), governance_);
    }

    // --- views -----------------------------------------------------------------------------

    /// @notice Everything a keeper needs about this vault in one call. Never reverts because of
    /// the feed: a feed that reverts or returns malformed data gives `oracle.ok == false`.
    function getState() external view override returns (VaultState memory s) {
        s.quoteBalance = IERC20Minimal(quote).balanceOf(address(this));
        s.underlyingBalance = IERC20Minimal(underlying).balanceOf(address(this));
        s.params = _params;
        s.book = _book;
        s.oracle = _readOracle();
        s.oracleDecimals = oracleDecimals;
        s.paused = paused;
        s.requestNonce = requestNonce;
        s.paramsVersion = paramsVersion;
        s.lastRebalanceAt = lastRebalanceAt;
        s.windowNotionalUsed = windowNotionalUsed;
        s.windowStart = windowStart;
    }

    function params() external view returns (VaultParams memory) {
        return _params;
    }

    function bookLength() external view returns (uint256) {
        return _book.length;
    }

    function option(uint256 index) external view returns (OptionLeg memory) {
        if (index >= _book.length) revert IndexOutOfRange(index, _book.length);
        return _book[index];
    }

    // --- keeper ----------------------------------------------------------------------------

    /// @notice Swap `amountIn` of the underlying for quote (`sellUnderlying`) or of quote for
    /// the underlying, through an allowlisted `router` called with `swapData`. Requires
    /// `received >= max(minOut, boundMin)` where boundMin is the oracle value of `amountIn`
    /// less `maxSlippageBps`. Returns the amount received, measured from balances.
    /// @dev The window is charged the oracle value of `amountIn` (the most the swap may spend);
    /// `Rebalanced.amountIn` is what actually left the vault (equal to `amountIn` for
    /// exact-input swaps).
    function rebalance(
        bool sellUnderlying,
        uint256 amountIn,
        uint256 minOut,
        address router,
        bytes calldata swapData,
        uint256 deadline
    ) external override nonReentrant onlyKeeper whenNotPaused returns (uint256 amountOut) {
        // Checks and effects (state is updated before the router is called).
        if (block.timestamp > deadline) revert DeadlineExpired(deadline, block.timestamp);
        if (!isRouter[router]) revert RouterNotAllowed(router);
        uint256 required = _admitTrade(sellUnderlying, amountIn, minOut);

        // Interactions.
        (address tokenIn, address tokenOut) = sellUnderlying ? (underlying, quote) : (quote, underlying);
        uint256 spent;
        (spent, amountOut) = _swap(tokenIn, tokenOut, amountIn, router, swapData);
        if (spent > amountIn) revert Overspent(spent, amountIn);
        if (amountOut < required) revert InsufficientOutput(amountOut, required);
        emit Rebalanced(msg.sender, sellUnderlying, spent, amountOut, router);
    }

    // --- governance ------------------------------------------------------------------------

    function writeOption(OptionLeg calldata leg) external override onlyGovernance returns (uint256 index) {
        if (leg.strike == 0 || leg.size == 0 || leg.expiry <= block.timestamp) revert InvalidOption();
        index = _book.length;
        _book.push(leg);
        emit OptionWritten(index, leg.strike, leg.expiry, leg.size, leg.isCall);
        _bumpVersion();
    }

    /// @notice Remove one leg; the legs after it move down by one (the book keeps its order).
    function removeOption(uint256 index) external override onlyGovernance {
        uint256 length = _book.length;
        if (index >= length) revert IndexOutOfRange(index, length);
        for (uint256 i = index; i + 1 < length; ++i) {
            _book[i] = _book[i + 1];
        }
        _book.pop();
        emit OptionRemoved(index);
        _bumpVersion();
    }

    function setParams(VaultParams calldata p) external override onlyGovernance {
        _setParams(p);
    }

    function setKeeper(address who, bool allowed) external override onlyGovernance {
        if (who == address(0)) revert ZeroAddress();
        isKeeper[who] = allowed;
        emit KeeperSet(who, allowed);
    }

    function setRouter(address router, bool allowed) external override onlyGovernance {
        if (router == address(0)) revert ZeroAddress();
        isRouter[router] = allowed;
        emit RouterSet(router, allowed);
    }

    function requestRebalance() external override onlyGovernance {
        uint64 nonce = ++requestNonce;
        emit RebalanceRequested(nonce, msg.sender);
    }

    function pause() external override onlyGovernance {
        if (paused) revert VaultPaused();
        paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external override onlyGovernance {
        if (!paused) revert VaultNotPaused();
        paused = false;
        emit Unpaused(msg.sender);
    }

    function transferGovernance(address next) external override onlyGovernance {
        if (next == address(0)) revert ZeroAddress();
        emit GovernanceTransferred(governance, next);
        governance = next;
    }

    /// @notice Pull `amount` of `token` from governance (which must have approved the vault).
    function deposit(address token, uint256 amount) external onlyGovernance nonReentrant {
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(token, msg.sender, amount);
    }

    function withdraw(address token, address to, uint256 amount) external onlyGovernance nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        token.safeTransfer(to, amount);
        emit Withdrawn(token, to, amount);
    }

    // --- internals -------------------------------------------------------------------------

    function _setParams(VaultParams memory p) private {
        if (p.impliedVolWad == 0) revert InvalidParams("impliedVolWad");
        if (p.policy > MAX_POLICY) revert InvalidParams("policy");
        if (p.maxSlippageBps >= BPS) revert InvalidParams("maxSlippageBps");
        if (p.windowSeconds == 0) revert InvalidParams("windowSeconds");
        if (p.oracleHeartbeat == 0) revert InvalidParams("oracleHeartbeat");
        _params = p;
        _bumpVersion();
    }

    /// @dev One version counter for params and book, announced with ParamsUpdated.
    function _bumpVersion() private {
        uint64 version = ++paramsVersion;
        emit ParamsUpdated(version);
    }

    function _checkedDecimals(uint8 decimals) private pure returns (uint8) {
        if (decimals > MAX_DECIMALS) revert InvalidDecimals(decimals);
        return decimals;
    }

    /// @dev latestRoundData through a low-level staticcall so that a reverting feed, or one that
    /// returns short or out-of-range data, reads as ok=false instead of reverting the caller.
    function _readOracle() private view returns (OracleRound memory round) {
        (bool success, bytes memory ret) =
            feed.staticcall(abi.encodeWithSelector(AggregatorV3Interface.latestRoundData.selector));
        if (!success || ret.length < 160) return round;
        (uint256 roundId, int256 answer,, uint256 updatedAt,) =
            abi.decode(ret, (uint256, int256, uint256, uint256, uint256));
        if (roundId > type(uint80).max) return round;
        round = OracleRound({roundId: uint80(roundId), answer: answer, updatedAt: updatedAt, ok: true});
    }

    /// @dev The oracle answer, checked: readable, positive, within bounds and not stale.
    function _freshAnswer() private view returns (uint256) {
        OracleRound memory round = _readOracle();
        if (!round.ok) revert OracleCallFailed(feed);
        if (round.answer <= 0) revert OracleNonPositive(round.answer);
        if (uint256(round.answer) > MAX_ANSWER) revert OracleAnswerTooLarge(round.answer);
        uint64 heartbeat = _params.oracleHeartbeat;
        if (round.updatedAt + heartbeat < block.timestamp) {
            revert OracleStale(round.updatedAt, heartbeat, block.timestamp);
        }
        return uint256(round.answer);
    }

    /// @dev Quote value of `amount` underlying at the oracle: amount * answer, rescaled from
    /// (underlying decimals + oracle decimals) to quote decimals. Rounds down.
    function _underlyingToQuote(uint256 amount, uint256 answer) private view returns (uint256) {
        return amount * answer * 10 ** quoteDecimals / 10 ** (uint256(underlyingDecimals) + oracleDecimals);
    }

    /// @dev Underlying bought by `amount` quote at the oracle. Rounds down.
    function _quoteToUnderlying(uint256 amount, uint256 answer) private view returns (uint256) {
        return amount * 10 ** (uint256(underlyingDecimals) + oracleDecimals) / (answer * 10 ** quoteDecimals);
    }

    /// @dev Oracle value of `amountIn` in the output token, less maxSlippageBps.
    function _boundMin(bool sellUnderlying, uint256 amountIn, uint256 answer) private view returns (uint256) {
        uint256 fair = sellUnderlying ? _underlyingToQuote(amountIn, answer) : _quoteToUnderlying(amountIn, answer);
        return fair * (BPS - _params.maxSlippageBps) / BPS;
    }

    /// @dev Checks the amount and the oracle, charges the trade's oracle notional to the window,
    /// stamps lastRebalanceAt and returns the output the swap must at least deliver:
    /// max(minOut, boundMin).
    function _admitTrade(bool sellUnderlying, uint256 amountIn, uint256 minOut) private returns (uint256) {
        if (amountIn == 0) revert ZeroAmount();
        if (amountIn > MAX_AMOUNT) revert AmountTooLarge(amountIn, MAX_AMOUNT);
        uint256 answer = _freshAnswer();
        _useNotional(sellUnderlying ? _underlyingToQuote(amountIn, answer) : amountIn);
        lastRebalanceAt = uint64(block.timestamp);
        uint256 boundMin = _boundMin(sellUnderlying, amountIn, answer);
        return minOut > boundMin ? minOut : boundMin;
    }

    /// @dev Adds `notional` (quote units) to the current window, starting a new window when
    /// `windowSeconds` have passed since the last one began.
    function _useNotional(uint256 notional) private {
        uint256 used = windowNotionalUsed;
        if (block.timestamp >= uint256(windowStart) + _params.windowSeconds) {
            windowStart = uint64(block.timestamp);
            used = 0;
        }
        uint256 cap = _params.notionalCapPerWindow;
        if (used + notional > cap) revert NotionalCapExceeded(used, notional, cap);
        windowNotionalUsed = used + notional;
    }

    /// @dev Approves exactly `amountIn`, calls the router, resets the allowance to 0 and returns
    /// what left and what arrived, from balance differences.
    function _swap(address tokenIn, address tokenOut, uint256 amountIn, address router, bytes calldata swapData)
        private
        returns (uint256 spent, uint256 received)
    {
        uint256 inBefore = IERC20Minimal(tokenIn).balanceOf(address(this));
        uint256 outBefore = IERC20Minimal(tokenOut).balanceOf(address(this));
        tokenIn.safeApprove(router, amountIn);
        (bool success, bytes memory reason) = router.call(swapData);
        if (!success) revert SwapFailed(reason);
        tokenIn.safeApprove(router, 0);
        uint256 inAfter = IERC20Minimal(tokenIn).balanceOf(address(this));
        uint256 outAfter = IERC20Minimal(tokenOut).balanceOf(address(this));
        spent = inBefore > inAfter ? inBefore - inAfter : 0;
        received = outAfter > outBefore ? outAfter - outBefore : 0;
    }
}
