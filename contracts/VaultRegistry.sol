// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @title VaultRegistry
/// @notice The list of vaults a keeper watches. `version` increases on every change so a keeper
/// can tell that its cached list is out of date with one cheap call.
contract VaultRegistry {
    error NotGovernance(address caller);
    error ZeroAddress();
    error AlreadyRegistered(address vault);
    error NotRegistered(address vault);

    event VaultAdded(address indexed vault);
    event VaultRemoved(address indexed vault);
    event GovernanceTransferred(address indexed previous, address indexed next);

    address public governance;
    uint64 public version;
    address[] private _vaults;
    /// @dev 1-based position in `_vaults`; 0 means not registered.
    mapping(address => uint256) private _position;

    modifier onlyGovernance() {
        if (msg.sender != governance) revert NotGovernance(msg.sender);
        _;
    }

    constructor(address governance_) {
        if (governance_ == address(0)) revert ZeroAddress();
        governance = governance_;
        emit GovernanceTransferred(address(0), governance_);
    }

    function vaults() external view returns (address[] memory) {
        return _vaults;
    }

    function isRegistered(address vault) external view returns (bool) {
        return _position[vault] != 0;
    }

    function addVault(address vault) external onlyGovernance {
        if (vault == address(0)) revert ZeroAddress();
        if (_position[vault] != 0) revert AlreadyRegistered(vault);
        _vaults.push(vault);
        _position[vault] = _vaults.length;
        ++version;
        emit VaultAdded(vault);
    }

    /// @notice Remove a vault; the last vault takes its place in the list.
    function removeVault(address vault) external onlyGovernance {
        uint256 position = _position[vault];
        if (position == 0) revert NotRegistered(vault);
        uint256 lastPosition = _vaults.length;
        if (position != lastPosition) {
            address moved = _vaults[lastPosition - 1];
            _vaults[position - 1] = moved;
            _position[moved] = position;
        }
        _vaults.pop();
        delete _position[vault];
        ++version;
        emit VaultRemoved(vault);
    }

    function transferGovernance(address next) external onlyGovernance {
        if (next == address(0)) revert ZeroAddress();
        emit GovernanceTransferred(governance, next);
        governance = next;
    }
}
